//! Reading credentials and the CA from Secrets in the informer cache, with errors that
//! name the Secret and key but never a value.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::SecretKeySelector;
use crate::sklm::Credentials;

/// Keys tried for the user name, in order; `username` is the `kubernetes.io/basic-auth` key.
pub const USER_KEYS: [&str; 2] = ["userid", "username"];
pub const PASSWORD_KEY: &str = "password";

/// A Secret or key that cannot be used; the message is safe to show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretProblem(pub String);

/// Reads `userid` (or `username`) and `password` from a Secret.
pub fn credentials(
    store: &Store<Secret>,
    namespace: &str,
    name: &str,
) -> Result<Credentials, SecretProblem> {
    let secret = lookup(store, namespace, name)?;
    let user_key = USER_KEYS
        .iter()
        .find(|key| has_key(&secret, key))
        .ok_or_else(|| {
            SecretProblem(format!(
                "Secret {namespace}/{name} has no key \"userid\" or \"username\""
            ))
        })?;
    Ok(Credentials {
        user: value(&secret, namespace, name, user_key)?,
        password: value(&secret, namespace, name, PASSWORD_KEY)?,
    })
}

/// Reads a PEM CA certificate from a Secret key.
pub fn ca_pem(
    store: &Store<Secret>,
    namespace: &str,
    selector: &SecretKeySelector,
) -> Result<String, SecretProblem> {
    let secret = lookup(store, namespace, &selector.name)?;
    let pem = value(&secret, namespace, &selector.name, &selector.key)?;
    crate::sklm::tls::parse_pem_certificates(&pem).map_err(|error| {
        SecretProblem(format!(
            "Secret {namespace}/{} key {:?} is not a usable CA certificate: {error}",
            selector.name, selector.key
        ))
    })?;
    Ok(pem)
}

/// Reads one key of a Secret as text, such as a backup password.
pub fn key_value(
    store: &Store<Secret>,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, SecretProblem> {
    let secret = lookup(store, namespace, name)?;
    value(&secret, namespace, name, key)
}

fn lookup(
    store: &Store<Secret>,
    namespace: &str,
    name: &str,
) -> Result<std::sync::Arc<Secret>, SecretProblem> {
    store
        .get(&ObjectRef::new(name).within(namespace))
        .ok_or_else(|| SecretProblem(format!("Secret {namespace}/{name} not found")))
}

fn has_key(secret: &Secret, key: &str) -> bool {
    secret
        .data
        .as_ref()
        .is_some_and(|data| data.contains_key(key))
}

/// A key's value as UTF-8 with one trailing `\n` or `\r\n` removed, as left by
/// `kubectl create secret --from-file`.
fn value(secret: &Secret, namespace: &str, name: &str, key: &str) -> Result<String, SecretProblem> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(|| SecretProblem(format!("Secret {namespace}/{name} has no key {key:?}")))?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| {
        SecretProblem(format!(
            "Secret {namespace}/{name} key {key:?} is not valid UTF-8"
        ))
    })?;
    let text = strip_line_ending(text);
    if text.is_empty() {
        return Err(SecretProblem(format!(
            "Secret {namespace}/{name} key {key:?} is empty"
        )));
    }
    Ok(text.to_owned())
}

/// Removes one trailing `\r\n` or `\n`.
#[must_use]
pub fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;
    use std::collections::BTreeMap;

    fn store_with(name: &str, data: &[(&str, &[u8])]) -> Store<Secret> {
        let (reader, mut writer) = store::<Secret>();
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.to_owned());
        secret.metadata.namespace = Some("keys".to_owned());
        secret.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        writer.apply_watcher_event(&Event::Apply(secret));
        reader
    }

    #[test]
    fn strip_line_ending_removes_one() {
        assert_eq!(strip_line_ending("pw\n"), "pw");
        assert_eq!(strip_line_ending("pw\r\n"), "pw");
        assert_eq!(strip_line_ending("pw\n\n"), "pw\n");
        assert_eq!(strip_line_ending("pw"), "pw");
    }

    #[test]
    fn credentials_from_file_style_values() {
        let store = store_with(
            "admin",
            &[("userid", b"admin\n"), ("password", b"pa ss\r\n")],
        );
        let credentials = credentials(&store, "keys", "admin").expect("valid");
        assert_eq!(credentials.user, "admin");
        assert_eq!(credentials.password, "pa ss");
    }

    #[test]
    fn credentials_from_basic_auth_username() {
        let store = store_with("admin", &[("username", b"klm"), ("password", b"x")]);
        assert_eq!(
            credentials(&store, "keys", "admin").expect("valid").user,
            "klm"
        );
    }

    #[test]
    fn credentials_missing_secret_names_it() {
        let store = store_with("other", &[]);
        let problem = credentials(&store, "keys", "admin").expect_err("missing");
        assert_eq!(problem.0, "Secret keys/admin not found");
    }

    #[test]
    fn credentials_missing_key_names_key_not_value() {
        let store = store_with("admin", &[("userid", b"admin"), ("passwd", b"hunter2")]);
        let problem = credentials(&store, "keys", "admin").expect_err("missing key");
        assert_eq!(problem.0, "Secret keys/admin has no key \"password\"");
        assert!(!problem.0.contains("hunter2"));
    }

    #[test]
    fn credentials_empty_and_non_utf8_values() {
        let store = store_with("admin", &[("userid", b"admin"), ("password", b"\n")]);
        assert_eq!(
            credentials(&store, "keys", "admin").expect_err("empty").0,
            "Secret keys/admin key \"password\" is empty"
        );
        let store = store_with("admin", &[("userid", b"\xff"), ("password", b"x")]);
        assert!(
            credentials(&store, "keys", "admin")
                .expect_err("bad")
                .0
                .contains("not valid UTF-8")
        );
    }

    #[test]
    fn ca_pem_rejects_non_certificate() {
        let store = store_with("ca", &[("ca.crt", b"hello")]);
        let selector = SecretKeySelector {
            name: "ca".to_owned(),
            key: "ca.crt".to_owned(),
        };
        let problem = ca_pem(&store, "keys", &selector).expect_err("not PEM");
        assert!(
            problem
                .0
                .starts_with("Secret keys/ca key \"ca.crt\" is not a usable CA certificate"),
            "{}",
            problem.0
        );
    }
}
