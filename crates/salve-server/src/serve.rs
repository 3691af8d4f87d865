//! Building the router and running the server with graceful shutdown, the metrics listener,
//! and the checkpoint worker.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::IntoResponse;
use tokio::sync::watch;

use crate::AppState;
use crate::error::ApiError;

pub fn build_router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    crate::routes::router(&state)
        .route_layer(middleware::from_fn(crate::context::record_route))
        .fallback(|| async { ApiError::not_found("route").into_response() })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::context::request_context,
        ))
        .with_state(state)
}

fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(s): State<AppState>| async move {
                crate::api::health::metrics_text(&s)
            }),
        )
        .with_state(state)
}

/// Runs until `shutdown` resolves, then drains requests and writes a final audit checkpoint.
/// `on_bound` learns the bound address (useful with port 0).
pub async fn serve(
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr) + Send,
) -> anyhow::Result<()> {
    state.config.check()?;
    let config = state.config.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = build_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();

    let metrics_task = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            let router = metrics_router(state.clone());
            let mut rx = stop_rx.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            }))
        }
        None => None,
    };

    let checkpoint_task = {
        let store = state.store.clone();
        let anchor = config.audit_anchor.clone();
        let period = config.checkpoint_interval;
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = store.write_checkpoints(anchor.as_deref()).await {
                            tracing::error!(error = %e.detail(), "audit checkpoint failed");
                        }
                    }
                    () = stopped(&mut rx) => break,
                }
            }
        })
    };

    let listener_task = {
        let store = state.store.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { store.listen_for_inbox_changes(stop).await })
    };

    // The HL7 feed binds before the web listener, so a bad address stops `serve` at once.
    let hl7_task = match &config.hl7 {
        Some(h) => {
            let feed = crate::hl7::Feed::new(state.clone(), h.clone());
            Some(crate::hl7::run(feed, stop_rx.clone()).await?.1)
        }
        None => None,
    };

    let worker_task = tokio::spawn(crate::worker::run(
        state.clone(),
        config.outbox_poll,
        stop_rx.clone(),
    ));

    // The scheduled pull from practices' EHRs: checks what is due on Salve's clock.
    let pull_task = tokio::spawn(crate::ehr::pull::run(
        state.clone(),
        std::time::Duration::from_secs(30),
        stop_rx.clone(),
    ));

    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests");
        let _ = stop_tx.send(true);
    };

    match &config.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            on_bound(listener.local_addr()?);
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls_config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                    .await
                    .with_context(|| "cannot load the TLS certificate or key".to_string())?;
            let handle = axum_server::Handle::new();
            let server =
                axum_server::bind_rustls(config.listen, rustls_config).handle(handle.clone());
            let h = handle.clone();
            tokio::spawn(async move {
                stop.await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
            });
            let serving = tokio::spawn(server.serve(app));
            if let Some(addr) = handle.listening().await {
                on_bound(addr);
            }
            serving.await??;
        }
    }

    let _ = checkpoint_task.await;
    let _ = worker_task.await;
    let _ = pull_task.await;
    let _ = listener_task.await;
    if let Some(t) = hl7_task {
        let _ = t.await;
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    // The final checkpoint covers everything written before shutdown.
    state
        .store
        .write_checkpoints(config.audit_anchor.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!(e.detail()))?;
    Ok(())
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
