//! HTTPS listener of the REST API: accepts TCP, completes the TLS handshake, serves
//! HTTP/1.1 with hyper, and carries out simulated restarts by closing the port, dropping
//! every open connection, and binding the same address again afterwards.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::AbortConnection;
use crate::sim::Sim;

/// Maximum time a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Maximum time a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts to bind the port again after a restart.
const REBIND_INTERVAL: Duration = Duration::from_millis(100);
/// Pause after a failed `accept`, such as when the process runs out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Binds `addr` with `SO_REUSEADDR`, so the port can be bound again right after a
/// simulated restart even while closed connections linger in `TIME_WAIT`.
pub fn bind_reusable(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The HTTPS listener task; see the module header.
pub struct ApiListener {
    pub listener: TcpListener,
    pub acceptor: TlsAcceptor,
    pub router: Router,
    pub sim: Sim,
    pub restart_requests: mpsc::UnboundedReceiver<Duration>,
}

impl ApiListener {
    /// Serves until every `Sim` handle that could request a restart is gone.
    pub async fn serve(self) {
        let ApiListener {
            listener,
            acceptor,
            router,
            sim,
            mut restart_requests,
        } = self;
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => {
                tracing::error!(%error, "cannot read the HTTPS listener address; stopping it");
                return;
            }
        };
        let mut listener = Some(listener);
        loop {
            let bound = match listener.take() {
                Some(bound) => bound,
                None => rebind(addr).await,
            };
            sim.report_listener(|status| status.listening = true);
            tracing::info!(%addr, "HTTPS API listening");

            let accepting = accept_until_restart(&bound, &acceptor, &router, &mut restart_requests);
            let Some(down_for) = accepting.await else {
                tracing::info!(%addr, "HTTPS API stopped");
                return;
            };
            drop(bound);
            sim.report_listener(|status| {
                status.listening = false;
                status.restarts_begun += 1;
            });
            tracing::info!(%addr, down_seconds = down_for.as_secs_f64(), "HTTPS port closed for a simulated restart");

            let stay_down = wait_out_restart(down_for, &mut restart_requests).await;
            sim.report_listener(|status| status.restarts_completed += 1);
            if !stay_down {
                return;
            }
        }
    }
}

/// Accepts connections until a restart request arrives, then aborts every connection
/// task. Returns the requested down time, or `None` when the request channel closed.
async fn accept_until_restart(
    listener: &TcpListener,
    acceptor: &TlsAcceptor,
    router: &Router,
    restart_requests: &mut mpsc::UnboundedReceiver<Duration>,
) -> Option<Duration> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            request = restart_requests.recv() => {
                connections.abort_all();
                return request;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, acceptor.clone(), router.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection");
                    sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Sleeps out a restart, extending it when more restart requests arrive. Returns false
/// when the request channel closed, meaning the listener should stop.
async fn wait_out_restart(
    down_for: Duration,
    restart_requests: &mut mpsc::UnboundedReceiver<Duration>,
) -> bool {
    let mut deadline = Instant::now() + down_for;
    loop {
        tokio::select! {
            () = sleep_until(deadline) => return true,
            request = restart_requests.recv() => match request {
                Some(more) => deadline = deadline.max(Instant::now() + more),
                None => return false,
            },
        }
    }
}

/// Binds `addr` again, retrying until it succeeds, because another socket may hold the
/// port for a moment.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut failures: u64 = 0;
    loop {
        match bind_reusable(addr) {
            Ok(listener) => return listener,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures % 50 == 0 {
                    tracing::warn!(%addr, %error, failures, "failed to bind the HTTPS port again; retrying");
                }
                sleep(REBIND_INTERVAL).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
) {
    let tls = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, timeout_seconds = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
            return;
        }
    };
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            let Ok(response) = router.oneshot(request.map(Body::new)).await;
            if response.extensions().get::<AbortConnection>().is_some() {
                return Err(ConnectionAborted);
            }
            Ok(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "HTTPS connection ended with an error");
    }
}

/// Service error that makes hyper close a connection without sending a response.
#[derive(Debug, thiserror::Error)]
#[error("connection closed without a response by a silent fault")]
struct ConnectionAborted;
