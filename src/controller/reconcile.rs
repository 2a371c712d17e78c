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
use crate::crd::{
    Phase, RestoreRequest, SklmRestore, SklmRestoreStatus, Submission, SubmissionState,
};
use crate::names::{FIELD_MANAGER, condition, reason};
use crate::sklm::hub::Snapshot;
use crate::sklm::hub::{PollTarget, Subscription};
use crate::sklm::tls::TlsSettings;
use crate::sklm::{ClientSettings, Endpoint, SklmError};

/// Safety net: reconcile at least this often, even when nothing triggers it.
const RESYNC: Duration = Duration::from_secs(300);

/// Retry delay for a run-restore request that failed before it left.
const NOT_SENT_RETRY: Duration = Duration::from_secs(30);

/// Retry delay after the object changed between its read and a status write.
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
    // With `spec.restore`, every status write requires the resourceVersion it was decided
    // from, so a stale cache can never overwrite a newer run-restore record.
    let mut stored = Stored {
        status: previous.clone(),
        resource_version: object
            .spec
            .restore
            .as_ref()
            .and_then(|_| object.resource_version()),
    };

    if previous.phase.is_some_and(Phase::is_finished) {
        ctx.hub.unsubscribe(&key);
        let decision = decide::keep_status(&previous, generation);
        let written = write_if_changed(&object, &stored, &decision, &ctx).await?;
        return Ok(after_write(written, Action::await_change()));
    }

    // The Secret cache fills beside the object cache after every start: a Secret missing
    // from it before its first list is complete may only not be listed yet.
    if ctx.secrets.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(PROBLEM_RETRY));
    }
    let record = ctx.latest_record(&object);
    let (target, backup_password) = match prepare(&object, &namespace, record.as_ref(), &ctx) {
        Ok(prepared) => prepared,
        Err((reason, message)) => {
            ctx.hub.unsubscribe(&key);
            let input = Input::Problem { reason, message };
            let decision =
                decide::decide(&previous, &input, settings, generation, Timestamp::now());
            let written = write_if_changed(&object, &stored, &decision, &ctx).await?;
            return Ok(after_write(written, Action::requeue(PROBLEM_RETRY)));
        }
    };
    let interval = Duration::from_secs(object.spec.poll_interval_seconds.into());
    let mut subscription = Subscription {
        interval,
        wants_result: previous.phase == Some(Phase::Running),
    };
    let snapshot = ctx.hub.subscribe(key.clone(), target.clone(), subscription);
    let mut base = previous.clone();
    let mut submission_recheck = None;
    if let Some(request) = &object.spec.restore {
        let sender = Sender {
            object: &object,
            request,
            record,
            target: &target,
            backup_password,
            latest_poll: snapshot.as_deref(),
            ctx: &ctx,
        };
        let Some(submitted) = sender.submit_once().await? else {
            return Ok(Action::requeue(CONFLICT_RETRY));
        };
        stored = submitted.stored;
        base = submitted.base;
        submission_recheck = submitted.recheck_after;
    }
    let Some(snapshot) = snapshot else {
        // The poller's first poll triggers the next reconcile. Until then only a new
        // run-restore record is written.
        let next = Action::requeue(submission_recheck.unwrap_or(RESYNC).min(RESYNC));
        if base == stored.status {
            return Ok(next);
        }
        let decision = decide::keep_status(&base, generation);
        let written = write_if_changed(&object, &stored, &decision, &ctx).await?;
        return Ok(after_write(written, next));
    };
    let decision = decide_polled(&object, &base, &snapshot, settings);
    if decision.wants_result != subscription.wants_result {
        subscription.wants_result = decision.wants_result;
        ctx.hub.subscribe(key.clone(), target, subscription);
    }
    let written = write_if_changed(&object, &stored, &decision, &ctx).await?;
    if decision.status.phase.is_some_and(Phase::is_finished) {
        ctx.hub.unsubscribe(&key);
        return Ok(after_write(written, Action::await_change()));
    }
    let next = next_reconcile(&decision).min(submission_recheck.unwrap_or(RESYNC));
    Ok(after_write(written, Action::requeue(next)))
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

/// The status as the API server stores it, and the resourceVersion a write must match
/// (`None`: no precondition).
struct Stored {
    status: SklmRestoreStatus,
    resource_version: Option<String>,
}

/// The outcome of [`Sender::submit_once`].
struct Submitted {
    /// The status the API server stores now, which the final write compares against.
    stored: Stored,
    /// The status to decide from: `stored` with the newest run-restore record.
    base: SklmRestoreStatus,
    /// Decide again after this long: a request another process may still be sending.
    recheck_after: Option<Duration>,
}

/// The inputs for sending the run-restore request of one object.
struct Sender<'a> {
    object: &'a SklmRestore,
    request: &'a RestoreRequest,
    /// The newest record known without asking the API server (see
    /// [`Context::latest_record`]).
    record: Option<Submission>,
    target: &'a PollTarget,
    /// Read only while the request still needs sending.
    backup_password: Option<String>,
    /// The poller's latest poll of the server, if any.
    latest_poll: Option<&'a Snapshot>,
    ctx: &'a Context,
}

impl Sender<'_> {
    /// Sends the run-restore request unless one was sent before, and returns the status
    /// with the submission record. `None` means the object changed or was replaced since
    /// it was read, so nothing was sent and the reconcile must run again.
    ///
    /// A record that still needs sending (none yet, or `NotSent`) is checked again on a
    /// fresh read from the API server, because the cache may not show another process's
    /// record yet. The `Sending` record is then written against that read's
    /// resourceVersion.
    async fn submit_once(self) -> Result<Option<Submitted>, Error> {
        let object = self.object;
        let uid = object.uid().unwrap_or_default();
        if !submission::needs_sending(self.record.as_ref()) {
            let stored = Stored {
                status: object.status.clone().unwrap_or_default(),
                resource_version: object.resource_version(),
            };
            let record = self.record.clone();
            return Ok(Some(self.settle(stored, record)));
        }
        let api = self.api();
        // A plain GET returns the status too, and needs no permission beyond the watch.
        let fresh = api
            .get(&object.name_any())
            .await
            .map_err(Error::StatusRead)?;
        if fresh.uid() != object.uid() || fresh.spec.restore != object.spec.restore {
            // Replaced, or `spec.restore` changed: the cached request is not the one to
            // send.
            return Ok(None);
        }
        let stored = Stored {
            status: fresh.status.clone().unwrap_or_default(),
            resource_version: fresh.resource_version(),
        };
        let record = stored.status.submission.clone();
        if !submission::needs_sending(record.as_ref()) {
            return Ok(Some(self.settle(stored, record)));
        }
        let backup = &self.request.backup_file_path;
        if let Some(rejected) = self.login_rejected() {
            // The poller retries rejected credentials every 5 minutes. A retry here would
            // log in every 30 s, which may lock the account.
            return Ok(Some(self.not_sent(stored, rejected)));
        }
        let session = match self.ctx.hub.session(self.target) {
            Ok(session) => session,
            Err(error) => return Ok(Some(self.not_sent(stored, &error))),
        };
        // Log in before recording, so a failed login is surely `NotSent`.
        if let Err(error) = session.ensure_login().await {
            return Ok(Some(self.not_sent(stored, &error)));
        }
        let mut claimed = stored.status.clone();
        claimed.submitted_time = Some(decide::whole_seconds(Timestamp::now()));
        claimed.submission = Some(submission::sending(self.request));
        let name = object.name_any();
        let written = apply_status(&api, &name, &claimed, stored.resource_version, self.ctx);
        let written = match written.await {
            Ok(written) => written,
            Err(kube::Error::Api(response)) if response.code == 409 => return Ok(None),
            // NOTE: a write that was stored but whose response was lost leaves a `Sending`
            // record that later reads as interrupted (`Unknown`), though nothing was sent.
            Err(error) => return Err(Error::StatusWrite(error)),
        };
        self.ctx.remember(&uid, submission::sending(self.request));
        let outcome = session
            .run_restore(backup, self.backup_password.as_deref())
            .await;
        let finished = decide::whole_seconds(Timestamp::now());
        let record = match &outcome {
            Ok(accepted) => submission::classify(backup, Ok(accepted), finished),
            // A failed login, even after the POST met a rejected session id, means the
            // server did not act on the request.
            Err(failure) if failure.in_login => {
                submission::not_sent(backup, &failure.error, finished)
            }
            Err(failure) => submission::classify(backup, Err(&failure.error), finished),
        };
        tracing::info!(
            object = %ObjectRef::from_obj(object),
            %backup,
            state = record.state.as_str(),
            "run-restore request sent"
        );
        self.ctx.remember(&uid, record.clone());
        let stored = Stored {
            status: written.status.clone().unwrap_or_default(),
            resource_version: written.resource_version(),
        };
        let mut base = stored.status.clone();
        base.submission = Some(record);
        Ok(Some(Submitted {
            stored,
            base,
            recheck_after: None,
        }))
    }

    /// Builds the status for a request that needs no sending now, because it was sent
    /// before or another process is sending it. A `Sending` record counts as interrupted
    /// once [`submission::in_flight_left`] is zero.
    fn settle(&self, stored: Stored, record: Option<Submission>) -> Submitted {
        let mut base = stored.status.clone();
        let mut recheck_after = None;
        if let Some(record) = record {
            let sending = record.state == SubmissionState::Sending;
            let timeout = self.object.spec.server.timeout_seconds;
            let left = base.submitted_time.as_ref().map_or(Duration::ZERO, |t| {
                submission::in_flight_left(&t.0, timeout, Timestamp::now())
            });
            base.submission = Some(if sending && left.is_zero() {
                submission::interrupted(&record)
            } else {
                if sending {
                    recheck_after = Some(left + Duration::from_secs(1));
                }
                record
            });
        }
        Submitted {
            stored,
            base,
            recheck_after,
        }
    }

    /// Builds the status with a `NotSent` record for `error`, which stopped the request
    /// before it left.
    fn not_sent(&self, stored: Stored, error: &SklmError) -> Submitted {
        let finished = decide::whole_seconds(Timestamp::now());
        let record = submission::not_sent(&self.request.backup_file_path, error, finished);
        tracing::info!(
            object = %ObjectRef::from_obj(self.object),
            backup = %self.request.backup_file_path,
            reason = error.reason(),
            "run-restore request not sent"
        );
        let mut base = stored.status.clone();
        base.submission = Some(record);
        Submitted {
            stored,
            base,
            recheck_after: None,
        }
    }

    /// Returns the poller's latest error when the server rejected the credentials.
    fn login_rejected(&self) -> Option<&SklmError> {
        let error = self.latest_poll?.outcome.as_ref().err()?;
        matches!(**error, SklmError::LoginRejected { .. }).then_some(&**error)
    }

    fn api(&self) -> Api<SklmRestore> {
        let namespace = self.object.namespace().unwrap_or_default();
        Api::namespaced(self.ctx.client.clone(), &namespace)
    }
}

/// Builds what the poller needs from the spec and Secrets, and reads the backup password
/// of `spec.restore` while the request still needs sending; an error is a condition
/// reason and a message safe to show.
fn prepare(
    object: &SklmRestore,
    namespace: &str,
    record: Option<&Submission>,
    ctx: &Context,
) -> Result<(PollTarget, Option<String>), (&'static str, String)> {
    let target = poll_target(object, namespace, ctx)?;
    // The password is needed only to send, so a Secret deleted after that changes nothing.
    let password_ref = object
        .spec
        .restore
        .as_ref()
        .filter(|_| submission::needs_sending(record))
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
    stored: &Stored,
    decision: &Decision,
    ctx: &Context,
) -> Result<Write, Error> {
    let previous = &stored.status;
    if decision.status == *previous {
        return Ok(Write::Unchanged);
    }
    let api: Api<SklmRestore> =
        Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let name = object.name_any();
    let precondition = stored.resource_version.clone();
    let mut written = apply_status(&api, &name, &decision.status, precondition, ctx).await;
    if is_conflict(&written) {
        // A spec or metadata edit also moves the resourceVersion. The decision still
        // holds when the run-restore record is unchanged, so write it once more.
        let fresh = api.get(&name).await.map_err(Error::StatusRead)?;
        let fresh_status = fresh.status.clone().unwrap_or_default();
        let same_record = fresh_status.submission == previous.submission
            && fresh_status.submitted_time == previous.submitted_time;
        if !same_record || fresh.uid() != object.uid() {
            return Ok(Write::Conflict);
        }
        let precondition = fresh.resource_version();
        written = apply_status(&api, &name, &decision.status, precondition, ctx).await;
    }
    match written {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 409 => return Ok(Write::Conflict),
        Err(error) => return Err(Error::StatusWrite(error)),
    }
    publish_event(object, previous, &decision.status, ctx).await;
    Ok(Write::Written)
}

/// Writes `status` by server-side apply, failing with 409 when `resource_version` is set
/// and the object has moved past it.
async fn apply_status(
    api: &Api<SklmRestore>,
    name: &str,
    status: &SklmRestoreStatus,
    resource_version: Option<String>,
    ctx: &Context,
) -> Result<SklmRestore, kube::Error> {
    let mut patch = serde_json::json!({
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "status": status,
    });
    if let Some(resource_version) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": resource_version});
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api.patch_status(name, &params, &Patch::Apply(&patch)).await;
    ctx.metrics.record_status_write(written.is_ok());
    written
}

fn is_conflict<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(response)) if response.code == 409)
}

/// The result of [`write_if_changed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Unchanged,
    Written,
    /// The object changed since it was read; nothing was written.
    Conflict,
}

/// Returns `action`, or a quick retry when the write found a newer object.
fn after_write(write: Write, action: Action) -> Action {
    match write {
        Write::Conflict => Action::requeue(CONFLICT_RETRY),
        Write::Unchanged | Write::Written => action,
    }
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
