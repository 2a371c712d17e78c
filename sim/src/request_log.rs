//! Log of every REST API request the simulator received, in arrival order, so tests can
//! count logins, polls and restore requests.
//!
//! A record never contains a password or a user authentication id: sessions appear as the
//! small numbers that `SessionStore` hands out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::model::Endpoint;

/// Records kept before the oldest are dropped; far above what one test sends.
pub const REQUEST_LOG_CAPACITY: usize = 100_000;

/// One REST API request as the simulator saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in arrival order, starting at 1 and never reused, even after a clear.
    pub seq: u64,
    /// Milliseconds between the simulator's start and the request's arrival.
    pub elapsed_ms: u64,
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Service the path names, or `None` for an unknown path.
    pub endpoint: Option<Endpoint>,
    /// HTTP status sent, or `None` while the request is in progress or when a `silent`
    /// fault sent nothing.
    pub status: Option<u16>,
    /// Session number of the id in the `Authorization` header, when that id was ever
    /// issued (even if it is no longer valid).
    pub session: Option<u64>,
    pub authorization_present: bool,
    /// Raw `Accept-Language` header value.
    pub accept_language: Option<String>,
    /// Login only: the `userid` field of the body.
    pub userid: Option<String>,
    /// Login only: the session number of the id issued by a successful login.
    pub issued_session: Option<u64>,
    /// Run restore only: the `backupFilePath` field of the body.
    pub backup_file_path: Option<String>,
    /// Run restore only: whether the body had a `password` field.
    pub backup_password_present: Option<bool>,
    /// Kind of the fault that replaced the normal response, if any.
    pub fault: Option<String>,
}

/// Details a handler adds to the record of its request, carried in response extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestNotes {
    pub userid: Option<String>,
    pub issued_session: Option<u64>,
    pub backup_file_path: Option<String>,
    pub backup_password_present: Option<bool>,
}

/// Bounded, ordered request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    records: VecDeque<RequestRecord>,
    last_seq: u64,
}

impl RequestLog {
    /// Appends `record`, giving it the next sequence number, and returns that number.
    pub fn begin(&mut self, mut record: RequestRecord) -> u64 {
        self.last_seq += 1;
        record.seq = self.last_seq;
        if self.records.len() >= REQUEST_LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
        self.last_seq
    }

    /// Updates the record `seq` in place; does nothing when it was cleared or dropped.
    pub fn update(&mut self, seq: u64, change: impl FnOnce(&mut RequestRecord)) {
        if let Some(record) = self
            .records
            .iter_mut()
            .rev()
            .find(|record| record.seq == seq)
        {
            change(record);
        }
    }

    /// Stores the response status and the handler's notes on record `seq`.
    pub fn finish(&mut self, seq: u64, status: u16, notes: Option<RequestNotes>) {
        self.update(seq, |record| {
            record.status = Some(status);
            if let Some(notes) = notes {
                record.userid = notes.userid;
                record.issued_session = notes.issued_session;
                record.backup_file_path = notes.backup_file_path;
                record.backup_password_present = notes.backup_password_present;
            }
        });
    }

    #[must_use]
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }

    /// Removes every record and returns how many there were. Sequence numbers go on.
    pub fn clear(&mut self) -> usize {
        let count = self.records.len();
        self.records.clear();
        count
    }

    /// Returns how many requests arrived since the start, cleared ones included.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> RequestRecord {
        RequestRecord {
            method: "GET".to_owned(),
            path: path.to_owned(),
            ..RequestRecord::default()
        }
    }

    #[test]
    fn sequence_survives_clear() {
        let mut log = RequestLog::default();
        assert_eq!(log.begin(record("/a")), 1);
        assert_eq!(log.begin(record("/b")), 2);
        assert_eq!(log.clear(), 2);
        assert_eq!(log.begin(record("/c")), 3);

        let records = log.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].seq, 3);
        assert_eq!(log.total(), 3);
    }

    #[test]
    fn finish_stores_status_and_notes() {
        let mut log = RequestLog::default();
        let seq = log.begin(record("/SKLM/rest/v1/ckms/login"));
        let notes = RequestNotes {
            userid: Some("admin".to_owned()),
            issued_session: Some(4),
            ..RequestNotes::default()
        };
        log.finish(seq, 200, Some(notes));

        let stored = &log.records()[0];
        assert_eq!(stored.status, Some(200));
        assert_eq!(stored.userid.as_deref(), Some("admin"));
        assert_eq!(stored.issued_session, Some(4));
    }

    #[test]
    fn finish_after_clear_is_ignored() {
        let mut log = RequestLog::default();
        let seq = log.begin(record("/a"));
        log.clear();
        log.finish(seq, 200, None);
        assert!(log.records().is_empty());
    }
}
