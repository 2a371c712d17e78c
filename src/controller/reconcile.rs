//! One reconcile: read the spec and Secrets, subscribe to the server's poller, decide the
//! status from its latest answer, and write the status only when it changed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::decide::{self, Decision, Input, Settings};
use super::{Context, Error, secrets, submission};
use crate::crd::{Phase, RestoreRequest, SklmRestore, SklmRestoreStatus, SubmissionState};
use crate::names::{FIELD_MANAGER, condition, reason};
use crate::sklm::hub::Snapshot;
use crate::sklm::hub::{PollTarget, Subscription};
use crate::sklm::tls::TlsSettings;
use crate::sklm::{ClientSettings, Endpoint};

/// Safety net: reconcile at least this often, even when nothing triggers it.
const RESYNC: Duration = Duration::from_secs(300);

/// Retry delay for a run-restore request that failed before it left.
const NOT_SENT_RETRY: Duration = Duration::from_secs(30);

/// Retry delay after the object changed while the run-restore request was being recorded.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// Retry delay for an object whose spec or Secret is unusable; fixing either triggers a
/// reconcile sooner.
const PROBLEM_RETRY: Duration = Duration::from_secs(60);

/// Reconciles one object; the steps are in the module header.
pub async fn reconcile(object: Arc<SklmRestore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*object);
    let namespace = object.namespace().ok_or(Error::NotNamespaced)?;
    let previous = object.status.clone().unwrap_or_default();
    let settings = Settings {
        restart_timeout: Duration::from_secs(object.spec.restart_timeout_seconds.into()),
        insecure_skip_tls_verify: object.spec.server.insecure_skip_tls_verify,
    };
    let generation = object.meta().generation;

    if previous.phase.is_some_and(Phase::is_finished) {
        ctx.hub.unsubscribe(&key);
        let decision = decide::keep_status(&previous, generation);
        write_if_changed(&object, &previous, &decision, &ctx).await?;
        return Ok(Action::await_change());
    }

    // The Secret cache fills beside the object cache after every start: a Secret missing
    // from it before its first list is complete may only not be listed yet.
    if ctx.secrets.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(PROBLEM_RETRY));
    }
    let (target, backup_password) = match prepare(&object, &namespace, &ctx) {
        Ok(prepared) => prepared,
        Err((reason, message)) => {
            ctx.hub.unsubscribe(&key);
            let input = Input::Problem { reason, message };
            let decision =
                decide::decide(&previous, &input, settings, generation, Timestamp::now());
            write_if_changed(&object, &previous, &decision, &ctx).await?;
            return Ok(Action::requeue(PROBLEM_RETRY));
        }
    };
    let interval = Duration::from_secs(object.spec.poll_interval_seconds.into());
    let mut subscription = Subscription {
        interval,
        wants_result: previous.phase == Some(Phase::Running),
    };
    let snapshot = ctx.hub.subscribe(key.clone(), target.clone(), subscription);
    let mut base = previous.clone();
    if let Some(request) = &object.spec.restore {
        let Some(submitted) =
            submit_once(&object, request, &target, backup_password, &previous, &ctx).await?
        else {
            return Ok(Action::requeue(CONFLICT_RETRY));
        };
        base = submitted;
    }
    let Some(snapshot) = snapshot else {
        // The poller's first poll triggers the next reconcile.
        if base != previous {
            let decision = decide::keep_status(&base, generation);
            write_if_changed(&object, &previous, &decision, &ctx).await?;
        }
        return Ok(Action::requeue(RESYNC));
    };
    let decision = decide_polled(&object, &base, &snapshot, settings);
    if decision.wants_result != subscription.wants_result {
        subscription.wants_result = decision.wants_result;
        ctx.hub.subscribe(key.clone(), target, subscription);
    }
    write_if_changed(&object, &previous, &decision, &ctx).await?;
    if decision.status.phase.is_some_and(Phase::is_finished) {
        ctx.hub.unsubscribe(&key);
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(next_reconcile(&decision)))
}

/// Decides the status from a poll, with the `RestoreSubmitted` condition when
/// `spec.restore` is set.
fn decide_polled(
    object: &SklmRestore,
    base: &SklmRestoreStatus,
    snapshot: &Snapshot,
    settings: Settings,
) -> Decision {
    let generation = object.meta().generation;
    let now = Timestamp::now();
    let mut decision = decide::decide(base, &Input::Poll(snapshot), settings, generation, now);
    if let (Some(request), Some(record)) = (&object.spec.restore, &base.submission) {
        let conditions = &mut decision.status.conditions;
        submission::set_condition(
            conditions,
            request,
            record,
            generation,
            &decide::whole_seconds(now),
        );
    }
    decision
}

/// When to reconcile again without a trigger.
fn next_reconcile(decision: &Decision) -> Duration {
    let not_sent = decision
        .status
        .submission
        .as_ref()
        .is_some_and(|s| s.state == SubmissionState::NotSent);
    let next = if not_sent { NOT_SENT_RETRY } else { RESYNC };
    decision.recheck_after.unwrap_or(next).min(next)
}

/// Sends the run-restore request for `spec.restore` unless one was sent before, and
/// returns the status with the submission record. `None` means the object changed since
/// it was read, so nothing was sent and the reconcile must run again.
async fn submit_once(
    object: &SklmRestore,
    request: &RestoreRequest,
    target: &PollTarget,
    backup_password: Option<String>,
    previous: &SklmRestoreStatus,
    ctx: &Context,
) -> Result<Option<SklmRestoreStatus>, Error> {
    let uid = object.uid().unwrap_or_default();
    let remembered = ctx
        .submissions
        .lock()
        .expect("submissions lock")
        .get(&uid)
        .cloned();
    let record = remembered.or_else(|| previous.submission.clone());
    let mut status = previous.clone();
    match record {
        Some(record) if record.state == SubmissionState::Sending => {
            // The answer was never recorded: the request may have left.
            status.submission = Some(submission::interrupted(&record));
            return Ok(Some(status));
        }
        Some(record) if !submission::needs_sending(Some(&record)) => {
            status.submission = Some(record);
            return Ok(Some(status));
        }
        _ => {}
    }
    status.submitted_time = Some(decide::whole_seconds(Timestamp::now()));
    status.submission = Some(submission::sending(request));
    match claim(object, &status, ctx).await {
        Ok(()) => {}
        Err(kube::Error::Api(response)) if response.code == 409 => return Ok(None),
        Err(error) => return Err(Error::StatusWrite(error)),
    }
    ctx.submissions
        .lock()
        .expect("submissions lock")
        .insert(uid.clone(), submission::sending(request));
    let path = &request.backup_file_path;
    let record = match ctx.hub.session(target) {
        Ok(session) => {
            let outcome = session.run_restore(path, backup_password.as_deref()).await;
            submission::classify(path, outcome.as_ref())
        }
        Err(error) => submission::classify(path, Err(&*error)),
    };
    tracing::info!(
        object = %ObjectRef::from_obj(object),
        backup = %request.backup_file_path,
        state = record.state.as_str(),
        "run-restore request sent"
    );
    ctx.submissions
        .lock()
        .expect("submissions lock")
        .insert(uid, record.clone());
    status.submission = Some(record);
    Ok(Some(status))
}

/// Writes the `Sending` record, failing with 409 if the object changed since it was read:
/// a stale read could otherwise miss an earlier record and send twice.
async fn claim(
    object: &SklmRestore,
    status: &SklmRestoreStatus,
    ctx: &Context,
) -> Result<(), kube::Error> {
    let api: Api<SklmRestore> =
        Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "metadata": {"resourceVersion": object.resource_version()},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api
        .patch_status(&object.name_any(), &params, &Patch::Apply(&patch))
        .await;
    ctx.metrics.record_status_write(written.is_ok());
    written.map(|_| ())
}

/// Builds what the poller needs from the spec and Secrets, and reads the backup password
/// of `spec.restore`; an error is a condition reason and a message safe to show.
fn prepare(
    object: &SklmRestore,
    namespace: &str,
    ctx: &Context,
) -> Result<(PollTarget, Option<String>), (&'static str, String)> {
    let target = poll_target(object, namespace, ctx)?;
    let password_ref = object
        .spec
        .restore
        .as_ref()
        .and_then(|r| r.password_secret_ref.as_ref());
    let password = match password_ref {
        Some(reference) => Some(
            secrets::key_value(&ctx.secrets, namespace, &reference.name, &reference.key)
                .map_err(|e| (reason::INVALID_SECRET, e.0))?,
        ),
        None => None,
    };
    Ok((target, password))
}

fn poll_target(
    object: &SklmRestore,
    namespace: &str,
    ctx: &Context,
) -> Result<PollTarget, (&'static str, String)> {
    let spec = &object.spec;
    let endpoint = Endpoint::parse(&spec.server.url, &spec.server.api_prefix)
        .map_err(|e| (reason::INVALID_SPEC, e.to_string()))?;
    let credentials =
        secrets::credentials(&ctx.secrets, namespace, &spec.credentials_secret_ref.name)
            .map_err(|e| (reason::INVALID_SECRET, e.0))?;
    let extra_ca_pem = match &spec.server.ca_secret_ref {
        Some(selector) => Some(
            secrets::ca_pem(&ctx.secrets, namespace, selector)
                .map_err(|e| (reason::INVALID_SECRET, e.0))?,
        ),
        None => None,
    };
    Ok(PollTarget {
        settings: ClientSettings {
            endpoint,
            tls: TlsSettings {
                extra_ca_pem,
                insecure_skip_verify: spec.server.insecure_skip_tls_verify,
            },
            timeout_seconds: spec.server.timeout_seconds,
            accept_language: spec.accept_language.clone(),
        },
        credentials,
    })
}

/// Writes the status by server-side apply when it differs from the stored one, and
/// records an Event when the Ready reason or the phase changed.
async fn write_if_changed(
    object: &SklmRestore,
    previous: &SklmRestoreStatus,
    decision: &Decision,
    ctx: &Context,
) -> Result<(), Error> {
    if decision.status == *previous {
        return Ok(());
    }
    let api: Api<SklmRestore> =
        Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "status": decision.status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api
        .patch_status(&object.name_any(), &params, &Patch::Apply(&patch))
        .await;
    ctx.metrics.record_status_write(written.is_ok());
    written.map_err(Error::StatusWrite)?;
    publish_event(object, previous, &decision.status, ctx).await;
    Ok(())
}

async fn publish_event(
    object: &SklmRestore,
    previous: &SklmRestoreStatus,
    status: &SklmRestoreStatus,
    ctx: &Context,
) {
    let ready_of = |s: &SklmRestoreStatus| {
        super::conditions::find(&s.conditions, condition::READY)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let Some((reason, message)) = ready_of(status) else {
        return;
    };
    let reason_changed = ready_of(previous).map(|(r, _)| r) != Some(reason.clone());
    if !reason_changed && previous.phase == status.phase {
        return;
    }
    let stalled = super::conditions::find(&status.conditions, condition::STALLED)
        .is_some_and(|c| c.status == "True");
    let event = Event {
        type_: if stalled {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason,
        note: Some(crate::sklm::response::truncate(&message, 1000)),
        action: "Poll".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(object = %ObjectRef::from_obj(object), %error, "failed to record an event");
    }
}
