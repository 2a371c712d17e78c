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
use super::{Context, Error, secrets};
use crate::crd::{Phase, SklmRestore, SklmRestoreStatus};
use crate::names::{FIELD_MANAGER, condition, reason};
use crate::sklm::hub::{PollTarget, Subscription};
use crate::sklm::tls::TlsSettings;
use crate::sklm::{ClientSettings, Endpoint};

/// Safety net: reconcile at least this often, even when nothing triggers it.
const RESYNC: Duration = Duration::from_secs(300);

/// Retry delay for an object whose spec or Secret is unusable; fixing either triggers a
/// reconcile sooner.
const PROBLEM_RETRY: Duration = Duration::from_secs(60);

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
        let decision = decide::keep_finished(&previous, generation);
        write_if_changed(&object, &previous, &decision, &ctx).await?;
        return Ok(Action::await_change());
    }

    let target = match poll_target(&object, &namespace, &ctx) {
        Ok(target) => target,
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
    let Some(snapshot) = ctx.hub.subscribe(key.clone(), target.clone(), subscription) else {
        // The poller's first poll triggers the next reconcile.
        return Ok(Action::requeue(RESYNC));
    };
    let decision = decide::decide(
        &previous,
        &Input::Poll(&snapshot),
        settings,
        generation,
        Timestamp::now(),
    );
    if decision.wants_result != subscription.wants_result {
        subscription.wants_result = decision.wants_result;
        ctx.hub.subscribe(key.clone(), target, subscription);
    }
    write_if_changed(&object, &previous, &decision, &ctx).await?;
    if decision.status.phase.is_some_and(Phase::is_finished) {
        ctx.hub.unsubscribe(&key);
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(
        decision.recheck_after.unwrap_or(RESYNC).min(RESYNC),
    ))
}

/// Builds what the poller needs from the spec and Secrets; an error is a condition reason
/// and a message safe to show.
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
