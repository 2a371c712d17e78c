//! User authentication ids of the simulated server: issuing them at login, checking the
//! `Authorization: SKLMAuth userAuthId=<id>` header, idle expiry, logout and revocation.
//!
//! Every issued id also gets a small session number, so the request log can tell sessions
//! apart without ever showing an id.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};

/// Length of a generated user authentication id.
const AUTH_ID_LEN: usize = 24;

/// Reason that an `Authorization` header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No header, or one that does not read `SKLMAuth userAuthId=<id>` (CTGKM6002E).
    MissingOrMalformed,
    /// The id was never issued, was logged out or revoked, or was forgotten by a restart
    /// (CTGKM6004E).
    UnknownId,
    /// The id was unused for longer than the idle timeout (CTGKM6004E).
    Expired,
}

/// Session a valid id belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub number: u64,
    pub userid: String,
}

#[derive(Debug)]
struct Session {
    info: SessionInfo,
    last_used: Instant,
}

/// Active sessions plus the numbering of every id issued since the process started.
#[derive(Debug)]
pub struct SessionStore {
    active: HashMap<String, Session>,
    numbers: HashMap<String, u64>,
    issued: u64,
    /// Time without use after which an id is rejected.
    pub idle_timeout: Duration,
    /// Whether a login revokes the ids issued earlier to the same user, as some servers do.
    pub login_revokes_previous: bool,
    /// Text put before the random part of every issued id, so a test can search its
    /// output for leaked ids. Empty by default.
    pub id_prefix: String,
}

impl SessionStore {
    #[must_use]
    pub fn new(idle_timeout: Duration) -> SessionStore {
        SessionStore {
            active: HashMap::new(),
            numbers: HashMap::new(),
            issued: 0,
            idle_timeout,
            login_revokes_previous: false,
            id_prefix: String::new(),
        }
    }

    /// Like [`SessionStore::new`], with every issued id starting with `id_prefix`.
    #[must_use]
    pub fn with_id_prefix(idle_timeout: Duration, id_prefix: &str) -> SessionStore {
        SessionStore {
            id_prefix: id_prefix.to_owned(),
            ..SessionStore::new(idle_timeout)
        }
    }

    /// Issues a new random id for `userid` and returns it with its session number.
    pub fn issue(&mut self, userid: &str, now: Instant) -> (String, u64) {
        if self.login_revokes_previous {
            self.active
                .retain(|_, session| session.info.userid != userid);
        }
        self.issued += 1;
        let number = self.issued;
        let random = Alphanumeric
            .sample_string(&mut rand::rng(), AUTH_ID_LEN)
            .to_ascii_lowercase();
        let id = format!("{}{random}", self.id_prefix);
        let info = SessionInfo {
            number,
            userid: userid.to_owned(),
        };
        self.numbers.insert(id.clone(), number);
        self.active.insert(
            id.clone(),
            Session {
                info,
                last_used: now,
            },
        );
        (id, number)
    }

    /// Checks the value of an `Authorization` header and marks the session as used.
    pub fn authorize(
        &mut self,
        header: Option<&str>,
        now: Instant,
    ) -> Result<SessionInfo, AuthFailure> {
        let id = header
            .and_then(parse_authorization)
            .ok_or(AuthFailure::MissingOrMalformed)?;
        self.check_id(id, now)
    }

    /// Checks an id, removing it when it has expired, and marks it as used.
    pub fn check_id(&mut self, id: &str, now: Instant) -> Result<SessionInfo, AuthFailure> {
        let session = self.active.get_mut(id).ok_or(AuthFailure::UnknownId)?;
        if now.saturating_duration_since(session.last_used) > self.idle_timeout {
            self.active.remove(id);
            return Err(AuthFailure::Expired);
        }
        session.last_used = now;
        Ok(session.info.clone())
    }

    /// Ends the session of `id`, returning it when the id was active.
    pub fn logout(&mut self, id: &str) -> Option<SessionInfo> {
        self.active.remove(id).map(|session| session.info)
    }

    /// Ends every session and returns how many were active.
    pub fn revoke_all(&mut self) -> usize {
        let count = self.active.len();
        self.active.clear();
        count
    }

    /// Returns the session number of an id issued at any time, active or not.
    #[must_use]
    pub fn number_of(&self, id: &str) -> Option<u64> {
        self.numbers.get(id).copied()
    }

    /// Counts the sessions that are active and not yet expired.
    #[must_use]
    pub fn active_count(&self, now: Instant) -> usize {
        self.active
            .values()
            .filter(|session| now.saturating_duration_since(session.last_used) <= self.idle_timeout)
            .count()
    }

    /// Returns how many ids were issued since the process started.
    #[must_use]
    pub fn issued_count(&self) -> u64 {
        self.issued
    }
}

/// Extracts the id from `SKLMAuth userAuthId=<id>`. The scheme and the key are matched
/// without regard to ASCII case; the id must be one token without spaces.
#[must_use]
pub fn parse_authorization(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("SKLMAuth") {
        return None;
    }
    let (key, id) = rest.trim_start().split_once('=')?;
    if !key.eq_ignore_ascii_case("userAuthId") || id.is_empty() {
        return None;
    }
    if id.chars().any(char::is_whitespace) {
        return None;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: &str) -> String {
        format!("SKLMAuth userAuthId={id}")
    }

    #[test]
    fn parse_authorization_cases() {
        assert_eq!(parse_authorization("SKLMAuth userAuthId=abc"), Some("abc"));
        assert_eq!(
            parse_authorization("sklmauth  USERAUTHID=abc "),
            Some("abc")
        );
        assert_eq!(parse_authorization("Bearer abc"), None);
        assert_eq!(parse_authorization("SKLMAuth userAuthId="), None);
        assert_eq!(parse_authorization("SKLMAuth abc"), None);
        assert_eq!(parse_authorization("SKLMAuth"), None);
        assert_eq!(parse_authorization("SKLMAuth userAuthId=a b"), None);
    }

    #[test]
    fn issued_id_authorizes() {
        let now = Instant::now();
        let mut store = SessionStore::new(Duration::from_secs(900));
        let (id, number) = store.issue("admin", now);
        assert_eq!(id.len(), AUTH_ID_LEN);
        assert_eq!(number, 1);

        let info = store
            .authorize(Some(&header(&id)), now)
            .expect("fresh id is valid");
        assert_eq!(info.number, 1);
        assert_eq!(info.userid, "admin");
    }

    #[test]
    fn issued_id_starts_with_prefix() {
        let now = Instant::now();
        let mut store = SessionStore::new(Duration::from_secs(900));
        store.id_prefix = "AuthId-test-".to_owned();
        let (id, _) = store.issue("admin", now);
        assert!(id.starts_with("AuthId-test-"), "{id}");
        assert_eq!(id.len(), "AuthId-test-".len() + AUTH_ID_LEN);
        assert!(store.check_id(&id, now).is_ok());
    }

    #[test]
    fn missing_and_unknown_ids_rejected() {
        let now = Instant::now();
        let mut store = SessionStore::new(Duration::from_secs(900));
        assert_eq!(
            store.authorize(None, now),
            Err(AuthFailure::MissingOrMalformed)
        );
        assert_eq!(
            store.authorize(Some("Basic YWRtaW4="), now),
            Err(AuthFailure::MissingOrMalformed)
        );
        assert_eq!(
            store.authorize(Some(&header("nope")), now),
            Err(AuthFailure::UnknownId)
        );
    }

    #[test]
    fn idle_id_expires() {
        let start = Instant::now();
        let mut store = SessionStore::new(Duration::from_secs(10));
        let (id, _) = store.issue("admin", start);

        let used = start + Duration::from_secs(9);
        assert!(store.check_id(&id, used).is_ok());

        // Use at 9 s restarted the idle clock, so 18 s is still within 10 s of idleness.
        assert!(store.check_id(&id, start + Duration::from_secs(18)).is_ok());

        let late = start + Duration::from_secs(29);
        assert_eq!(store.check_id(&id, late), Err(AuthFailure::Expired));
        assert_eq!(store.check_id(&id, late), Err(AuthFailure::UnknownId));
        assert_eq!(store.number_of(&id), Some(1));
    }

    #[test]
    fn logout_and_revoke_end_sessions() {
        let now = Instant::now();
        let mut store = SessionStore::new(Duration::from_secs(900));
        let (first, _) = store.issue("admin", now);
        let (second, _) = store.issue("admin", now);
        let (third, _) = store.issue("other", now);

        assert!(store.logout(&first).is_some());
        assert!(store.logout(&first).is_none());
        assert_eq!(store.check_id(&first, now), Err(AuthFailure::UnknownId));
        assert_eq!(store.active_count(now), 2);

        assert_eq!(store.revoke_all(), 2);
        assert_eq!(store.check_id(&second, now), Err(AuthFailure::UnknownId));
        assert_eq!(store.check_id(&third, now), Err(AuthFailure::UnknownId));
        assert_eq!(store.issued_count(), 3);
    }

    #[test]
    fn login_can_revoke_previous_ids() {
        let now = Instant::now();
        let mut store = SessionStore::new(Duration::from_secs(900));
        store.login_revokes_previous = true;
        let (first, _) = store.issue("admin", now);
        let (other, _) = store.issue("other", now);
        let (second, _) = store.issue("admin", now);

        assert_eq!(store.check_id(&first, now), Err(AuthFailure::UnknownId));
        assert!(store.check_id(&second, now).is_ok());
        assert!(store.check_id(&other, now).is_ok());
    }
}
