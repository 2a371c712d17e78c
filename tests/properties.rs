//! Property tests of the response parser and the status decision: no input makes them
//! panic, and the status they build always keeps the rules users rely on.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use sklm_restore_operator::controller::decide::{self, Decision, Input, Settings};
use sklm_restore_operator::crd::{
    Condition, LastError, Phase, RestorePhase, ServerMessage, SklmRestoreStatus,
};
use sklm_restore_operator::sklm::hub::Snapshot;
use sklm_restore_operator::sklm::response::{
    self, MAX_CODE_TEXT, MAX_STATUS_TEXT, parse_error_body, parse_is_running, parse_login,
    parse_result,
};
use sklm_restore_operator::sklm::{RestoreObservation, RestoreResult, SklmError};

/// Cases per property: enough to reach the rare branches, few enough for a normal
/// `cargo test` run of a few seconds.
const CASES: u32 = 2000;

const PHASE_NAMES: [&str; 8] = [
    "IDLE",
    "INITIALIZE",
    "CREATE_TEMP_DIR",
    "RESTORE_CONFIG_FILES",
    "RESTORE_KEYSTORES",
    "RESTORE_DATABASES",
    "CLEANUP",
    "COMPLETED",
];

/// Texts a server may put in `code` or `status`, plus noise.
fn server_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("CTGKM3293I Restore process is not running.".to_owned()),
        proptest::sample::select(PHASE_NAMES.to_vec()).prop_map(str::to_owned),
        proptest::sample::select(PHASE_NAMES.to_vec())
            .prop_map(|name| format!("CTGKM3292I Restore process is running. Phase: {name}.")),
        (-3i64..12).prop_map(|n| n.to_string()),
        "CTGKM[0-9]{3,5}[IWE]( [a-zA-Z .]{0,30})?",
        ".{0,80}",
        "[A-Z_ ]{0,40}",
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        server_text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON objects with the keys the parsers look for, in any letter case, and extra keys.
fn body_object() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("code"),
        Just("Code"),
        Just("status"),
        Just("STATUS"),
        Just("result"),
        Just("message"),
        Just("UserAuthId"),
        Just("userauthid"),
        Just("messageId"),
    ];
    proptest::collection::vec((key, json_value()), 0..5).prop_map(|fields| {
        let object: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        serde_json::to_vec(&serde_json::Value::Object(object)).expect("serialize")
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        body_object(),
        json_value().prop_map(|value| serde_json::to_vec(&value).expect("serialize")),
    ]
}

fn is_message_id(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("CTGKM") else {
        return false;
    };
    let (digits, severity) = rest.split_at(rest.len().saturating_sub(1));
    matches!(severity, "I" | "W" | "E")
        && (3..=5).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn parser_never_panics_and_bounds_text(body in any_body()) {
        if let Ok(observation) = parse_is_running(&body) {
            prop_assert!(observation.message.status.len() <= MAX_STATUS_TEXT);
            prop_assert!(observation.message.code.len() <= MAX_CODE_TEXT);
        }
        let _ = parse_result(&body);
        if let Ok(id) = parse_login(&body) {
            prop_assert!(!id.is_empty());
            prop_assert_eq!(id.trim(), id.as_str());
        }
        let (message_id, text) = parse_error_body(&body);
        prop_assert!(text.len() <= MAX_STATUS_TEXT);
        if let Some(id) = message_id {
            prop_assert!(is_message_id(&id), "{}", id);
        }
    }

    #[test]
    fn parser_not_running_id_wins(code in server_text(), rest in "[a-zA-Z .]{0,40}") {
        let status = format!("CTGKM3293I {rest}");
        let body = serde_json::json!({"code": code, "status": status});
        let observation = parse_is_running(body.to_string().as_bytes()).expect("parses");
        prop_assert_eq!(observation.step, RestorePhase::Idle);
    }

    #[test]
    fn parser_plain_words_are_unknown(code in "[a-z ]{0,20}", status in "[a-z .,]{1,60}") {
        // Lower-case words name no phase, carry no id and no number: never a guess.
        let body = serde_json::json!({"code": code, "status": status});
        let observation = parse_is_running(body.to_string().as_bytes()).expect("parses");
        prop_assert_eq!(observation.step, RestorePhase::Unknown);
    }

    #[test]
    fn parser_result_only_three_values(value in json_value()) {
        let body = serde_json::json!({"result": value});
        let parsed = parse_result(body.to_string().as_bytes());
        let text = match &value {
            serde_json::Value::String(text) => Some(text.trim().to_owned()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        match text.as_deref() {
            Some("-1") => prop_assert_eq!(parsed, Ok(RestoreResult::Unknown)),
            Some("0") => prop_assert_eq!(parsed, Ok(RestoreResult::Succeeded)),
            Some("1") => prop_assert_eq!(parsed, Ok(RestoreResult::Failed)),
            _ => prop_assert!(parsed.is_err(), "{:?} from {}", parsed, value),
        }
    }

    #[test]
    fn truncate_keeps_prefix_on_char_boundary(text in ".{0,200}", max in 0usize..300) {
        let cut = response::truncate(&text, max);
        prop_assert!(cut.len() <= max);
        prop_assert!(text.starts_with(&cut));
    }
}

// ---- the status decision ----

fn phase() -> impl Strategy<Value = Phase> {
    proptest::sample::select(Phase::ALL.to_vec())
}

fn restore_phase() -> impl Strategy<Value = RestorePhase> {
    let mut all: Vec<RestorePhase> = RestorePhase::TABLE.iter().map(|(p, _)| *p).collect();
    all.push(RestorePhase::Unknown);
    proptest::sample::select(all)
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (1_700_000_000i64..1_900_000_000).prop_map(|s| Timestamp::from_second(s).expect("valid"))
}

fn condition() -> impl Strategy<Value = Condition> {
    (
        proptest::sample::select(vec!["Ready", "Reconciling", "Stalled", "Other"]),
        proptest::sample::select(vec!["True", "False", "Unknown"]),
        proptest::sample::select(vec![
            "WaitingForRestore",
            "RestoreInProgress",
            "ServerUnreachable",
            "RestoreSucceeded",
        ]),
        ".{0,20}",
        timestamp(),
        proptest::option::of(1i64..5),
    )
        .prop_map(
            |(type_, status, reason, message, time, generation)| Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                last_transition_time: Time(time),
                observed_generation: generation,
            },
        )
}

fn previous_status() -> impl Strategy<Value = SklmRestoreStatus> {
    (
        proptest::option::of(1i64..5),
        proptest::option::of(phase()),
        proptest::option::of(restore_phase()),
        proptest::option::of(("[0-9]{0,2}", ".{0,30}")),
        proptest::option::of(timestamp()),
        proptest::option::of(timestamp()),
        proptest::option::of(("[A-Za-z]{1,20}", ".{1,30}")),
        proptest::collection::vec(condition(), 0..4),
    )
        .prop_map(
            |(generation, phase, step, message, start, completion, error, conditions)| {
                SklmRestoreStatus {
                    observed_generation: generation,
                    phase,
                    restore_phase: step,
                    server_message: message.map(|(code, status)| ServerMessage { code, status }),
                    start_time: start.map(Time),
                    completion_time: completion.map(Time),
                    last_error: error.map(|(reason, message)| LastError {
                        reason,
                        http_status: None,
                        message_id: None,
                        message,
                    }),
                    conditions,
                    ..SklmRestoreStatus::default()
                }
            },
        )
}

/// Errors of a poll, described by cloneable parts: `SklmError` itself is not `Clone`.
#[derive(Clone, Debug)]
enum ErrorCase {
    Unreachable,
    Timeout,
    Tls,
    InvalidCa,
    InvalidUrl,
    Http(u16, Option<String>, String),
    LoginRejected(u16, Option<String>),
    SessionRejected(u16, Option<String>),
    Redirect(u16, Option<String>),
    BodyTooLarge,
    InvalidResponse,
}

impl ErrorCase {
    fn build(self) -> SklmError {
        let origin = "https://127.0.0.1:9443".to_owned();
        match self {
            ErrorCase::Unreachable => SklmError::Unreachable {
                origin,
                detail: "connection refused".to_owned(),
            },
            ErrorCase::Timeout => SklmError::Timeout {
                origin,
                seconds: 10,
            },
            ErrorCase::Tls => SklmError::Tls {
                origin,
                detail: "invalid peer certificate".to_owned(),
            },
            ErrorCase::InvalidCa => SklmError::InvalidCa {
                detail: "no PEM".to_owned(),
            },
            ErrorCase::InvalidUrl => SklmError::InvalidUrl {
                url: "http://x".to_owned(),
                detail: "the scheme must be https".to_owned(),
            },
            ErrorCase::Http(status, message_id, text) => SklmError::Http {
                status,
                path: "/SKLM/rest/v1/ckms/restore/isrunning".to_owned(),
                message_id,
                text,
            },
            ErrorCase::LoginRejected(status, message_id) => SklmError::LoginRejected {
                user: "klmadmin".to_owned(),
                status,
                message_id,
            },
            ErrorCase::SessionRejected(status, message_id) => {
                SklmError::SessionRejected { status, message_id }
            }
            ErrorCase::Redirect(status, location) => SklmError::Redirect { status, location },
            ErrorCase::BodyTooLarge => SklmError::BodyTooLarge { limit: 16384 },
            ErrorCase::InvalidResponse => SklmError::InvalidResponse {
                path: "/ckms/restore/isrunning",
                detail: "body is not a JSON object".to_owned(),
            },
        }
    }
}

fn error() -> impl Strategy<Value = Arc<SklmError>> {
    let id = || {
        proptest::option::of(proptest::sample::select(vec![
            "CTGKM6004E".to_owned(),
            "CTGKM6002E".to_owned(),
            "CTGKM9999E".to_owned(),
        ]))
    };
    prop_oneof![
        Just(ErrorCase::Unreachable),
        Just(ErrorCase::Timeout),
        Just(ErrorCase::Tls),
        Just(ErrorCase::InvalidCa),
        Just(ErrorCase::InvalidUrl),
        (400u16..600, id(), ".{0,20}").prop_map(|(s, i, t)| ErrorCase::Http(s, i, t)),
        (400u16..500, id()).prop_map(|(s, i)| ErrorCase::LoginRejected(s, i)),
        (400u16..500, id()).prop_map(|(s, i)| ErrorCase::SessionRejected(s, i)),
        (
            300u16..400,
            proptest::option::of(Just("https://other:1".to_owned()))
        )
            .prop_map(|(s, l)| ErrorCase::Redirect(s, l)),
        Just(ErrorCase::BodyTooLarge),
        Just(ErrorCase::InvalidResponse),
    ]
    .prop_map(|case| Arc::new(case.build()))
}

fn result() -> impl Strategy<Value = Option<Result<RestoreResult, Arc<SklmError>>>> {
    proptest::option::of(prop_oneof![
        Just(Ok(RestoreResult::Unknown)),
        Just(Ok(RestoreResult::Succeeded)),
        Just(Ok(RestoreResult::Failed)),
        error().prop_map(Err),
    ])
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    let outcome = prop_oneof![
        (restore_phase(), "[0-9]{0,2}", ".{0,40}").prop_map(|(step, code, status)| Ok(
            RestoreObservation {
                step,
                message: ServerMessage { code, status },
            }
        )),
        error().prop_map(Err),
    ];
    (
        1u64..100,
        timestamp(),
        outcome,
        result(),
        proptest::option::of(timestamp()),
    )
        .prop_map(
            |(sequence, polled_at, outcome, result, failing_since)| Snapshot {
                sequence,
                polled_at,
                outcome,
                result,
                failing_since,
            },
        )
}

/// One thing a reconcile can learn: a poll, or a problem with the spec or Secret.
#[derive(Clone, Debug)]
enum Step {
    Poll(Snapshot),
    Problem(&'static str, String),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => snapshot().prop_map(Step::Poll),
        1 => (
            proptest::sample::select(vec!["InvalidSecret", "InvalidSpec"]),
            ".{1,40}",
        )
            .prop_map(|(reason, message)| Step::Problem(reason, message)),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (10u64..=86_400, any::<bool>()).prop_map(|(seconds, insecure)| Settings {
        restart_timeout: Duration::from_secs(seconds),
        insecure_skip_tls_verify: insecure,
    })
}

fn run_step(
    previous: &SklmRestoreStatus,
    step: &Step,
    settings: Settings,
    generation: Option<i64>,
    now: Timestamp,
) -> Decision {
    let input = match step {
        Step::Poll(snapshot) => Input::Poll(snapshot),
        Step::Problem(reason, message) => Input::Problem {
            reason,
            message: message.clone(),
        },
    };
    decide::decide(previous, &input, settings, generation, now)
}

fn rank(phase: Option<Phase>) -> u8 {
    match phase {
        None => 0,
        Some(Phase::Pending) => 1,
        Some(Phase::Waiting) => 2,
        Some(Phase::Running) => 3,
        Some(Phase::Completed | Phase::Failed) => 4,
    }
}

fn has_null(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.iter().any(has_null),
        serde_json::Value::Object(fields) => fields.values().any(has_null),
        _ => false,
    }
}

/// Checks the rules that every status built from an unfinished one keeps.
fn check_unfinished_step(
    previous: &SklmRestoreStatus,
    next: &SklmRestoreStatus,
) -> Result<(), TestCaseError> {
    let types: Vec<&str> = next.conditions.iter().map(|c| c.type_.as_str()).collect();
    prop_assert_eq!(&types[..3], ["Ready", "Reconciling", "Stalled"]);
    for type_ in &types[3..] {
        prop_assert!(
            !["Ready", "Reconciling", "Stalled"].contains(type_),
            "a kstatus condition appears twice: {:?}",
            types
        );
    }
    for condition in &next.conditions[..3] {
        prop_assert!(!condition.reason.is_empty(), "{:?}", condition);
        prop_assert!(!condition.message.is_empty(), "{:?}", condition);
        prop_assert!(
            condition.status == "True" || condition.status == "False",
            "{:?}",
            condition
        );
        let kept = previous.conditions.iter().find(|c| {
            c.type_ == condition.type_
                && c.status == condition.status
                && c.reason == condition.reason
        });
        if let Some(kept) = kept {
            prop_assert_eq!(
                &kept.last_transition_time,
                &condition.last_transition_time,
                "{} kept its status and reason but moved its time",
                condition.type_
            );
        }
    }
    let ready = &next.conditions[0];
    prop_assert_eq!(
        ready.status == "True",
        next.phase == Some(Phase::Completed),
        "Ready is True exactly when Completed: {:?}",
        next
    );
    prop_assert!(
        rank(next.phase) >= rank(previous.phase),
        "phase moved back: {:?} -> {:?}",
        previous.phase,
        next.phase
    );
    prop_assert!(next.phase.is_some(), "phase always set");
    if previous.start_time.is_some() {
        prop_assert_eq!(&previous.start_time, &next.start_time, "startTime kept");
    }
    if next.phase.is_some_and(Phase::is_finished) {
        prop_assert!(
            next.completion_time.is_some(),
            "completionTime set at the end"
        );
    }
    let json = serde_json::to_value(next).expect("serialize");
    prop_assert!(!has_null(&json), "null in {}", json);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn decide_any_previous_status(
        previous in previous_status(),
        step in step(),
        settings in settings(),
        generation in proptest::option::of(1i64..10),
        now in timestamp(),
    ) {
        let decision = run_step(&previous, &step, settings, generation, now);
        let next = &decision.status;
        prop_assert_eq!(next.observed_generation, generation);
        if previous.phase.is_some_and(Phase::is_finished) {
            let kept = decide::keep_status(&previous, generation);
            prop_assert_eq!(next, &kept.status, "a finished restore never changes");
            prop_assert!(!decision.wants_result);
        } else {
            check_unfinished_step(&previous, next)?;
        }
    }

    #[test]
    fn decide_sequences_from_empty_status(
        steps in proptest::collection::vec(step(), 1..25),
        settings in settings(),
        start in 1_700_000_000i64..1_800_000_000,
    ) {
        let mut status = SklmRestoreStatus::default();
        let mut finished: Option<SklmRestoreStatus> = None;
        for (index, step) in steps.iter().enumerate() {
            let offset = i64::try_from(index).expect("small") * 7;
            let now = Timestamp::from_second(start + offset).expect("valid");
            let decision = run_step(&status, step, settings, Some(1), now);
            let next = decision.status;
            if let Some(done) = &finished {
                prop_assert_eq!(&next, done, "a finished restore never changes");
            } else {
                check_unfinished_step(&status, &next)?;
                if next.phase.is_some_and(Phase::is_finished) {
                    finished = Some(next.clone());
                }
            }
            prop_assert_eq!(
                decide::decide(&next, &Input::Problem { reason: "InvalidSpec", message: "x".to_owned() }, settings, Some(1), now).status.phase,
                next.phase,
                "a problem keeps the phase"
            );
            status = next;
        }
    }
}
