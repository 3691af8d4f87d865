//! MLLP (HL7's Minimal Lower Layer Protocol): each message framed as 0x0B … 0x1C 0x0D over TCP,
//! optionally inside TLS. Connections from addresses no source names are closed before a byte
//! is read; frames are bounded in size, and a connection that is slow to deliver a started
//! message, or idle too long, is closed (slowloris).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};

use super::Feed;
use crate::config::TlsFiles;

const START: u8 = 0x0B;
const END: u8 = 0x1C;
const CR: u8 = 0x0D;

/// Why a connection was closed; names no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    TooLarge,
    Slow,
    NotMllp,
    Io,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "message larger than hl7.max_message_bytes",
            Self::Slow => "message not delivered within hl7.read_timeout_secs",
            Self::NotMllp => "bytes outside an MLLP frame",
            Self::Io => "connection error",
        }
    }
}

/// Reads one frame. `Ok(None)`: the peer closed (or stayed idle too long) between messages.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max: usize,
    read_timeout: Duration,
    idle_timeout: Duration,
) -> Result<Option<Vec<u8>>, Closed> {
    // Between messages: wait for the start byte, skipping line ends some senders add.
    loop {
        let buf = match timeout(idle_timeout, reader.fill_buf()).await {
            Err(_) => return Ok(None),
            Ok(Err(_)) => return Err(Closed::Io),
            Ok(Ok(b)) => b,
        };
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        match first {
            START => {
                reader.consume(1);
                break;
            }
            b'\r' | b'\n' => reader.consume(1),
            _ => return Err(Closed::NotMllp),
        }
    }
    let deadline = Instant::now() + read_timeout;
    let mut frame = Vec::new();
    loop {
        let buf = match timeout_at(deadline, reader.fill_buf()).await {
            Err(_) => return Err(Closed::Slow),
            Ok(Err(_)) => return Err(Closed::Io),
            Ok(Ok(b)) => b,
        };
        if buf.is_empty() {
            return Err(Closed::Io);
        }
        match buf.iter().position(|b| *b == END) {
            Some(i) => {
                if frame.len() + i > max {
                    return Err(Closed::TooLarge);
                }
                frame.extend_from_slice(&buf[..i]);
                reader.consume(i + 1);
                // The trailing carriage return.
                let buf = match timeout_at(deadline, reader.fill_buf()).await {
                    Err(_) => return Err(Closed::Slow),
                    Ok(Err(_)) => return Err(Closed::Io),
                    Ok(Ok(b)) => b,
                };
                if buf.first() != Some(&CR) {
                    return Err(Closed::NotMllp);
                }
                reader.consume(1);
                return Ok(Some(frame));
            }
            None => {
                let n = buf.len();
                if frame.len() + n > max {
                    return Err(Closed::TooLarge);
                }
                frame.extend_from_slice(buf);
                reader.consume(n);
            }
        }
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    feed: Feed,
    stream: S,
    peer: IpAddr,
    mut stop: watch::Receiver<bool>,
) {
    let config = feed.config().clone();
    let mut reader = BufReader::new(stream);
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut reader, config.max_message_bytes, config.read_timeout, config.idle_timeout) => f,
            _ = stop.wait_for(|s| *s) => return,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(why) => {
                tracing::warn!(%peer, reason = why.as_str(), "hl7: closing the connection");
                return;
            }
        };
        let ack = feed.handle(peer, &frame).await;
        let mut out = Vec::with_capacity(ack.len() + 3);
        out.push(START);
        out.extend_from_slice(ack.as_bytes());
        out.extend_from_slice(&[END, CR]);
        let stream = reader.get_mut();
        let written = timeout(config.read_timeout, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(%peer, "hl7: could not send the ACK; closing the connection");
            return;
        }
    }
}

fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .context("cannot read the HL7 listener's TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .context("cannot read the HL7 listener's TLS key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the HL7 listener's TLS certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds the listener (so a bad address fails `serve` at start) and returns the task that
/// accepts connections until `stop`, then lets open connections finish their message.
pub(crate) async fn run(
    feed: Feed,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let config = feed.config().clone();
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen for HL7 on {}", config.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, tls = tls.is_some(), "hl7 listener started");
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let task = tokio::spawn(async move {
        let mut stop_rx = stop.clone();
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop_rx.wait_for(|s| *s) => break,
            };
            // Reap finished connections as we go.
            while connections.try_join_next().is_some() {}
            let Ok((socket, peer)) = accepted else {
                continue;
            };
            if !config.address_allowed(peer.ip()) {
                tracing::warn!(peer = %peer.ip(), "hl7: refused a connection from an address no source names");
                continue;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(peer = %peer.ip(), "hl7: too many connections; refused one");
                continue;
            };
            let feed = feed.clone();
            let stop = stop.clone();
            let tls = tls.clone();
            let handshake = config.read_timeout;
            connections.spawn(async move {
                let _permit = permit;
                let _ = socket.set_nodelay(true);
                match tls {
                    None => serve_connection(feed, socket, peer.ip(), stop).await,
                    Some(acceptor) => match timeout(handshake, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => serve_connection(feed, stream, peer.ip(), stop).await,
                        _ => tracing::warn!(peer = %peer.ip(), "hl7: TLS handshake failed"),
                    },
                }
            });
        }
        drop(listener);
        // Open connections finish the message in hand (they stop reading at once).
        let drain = async { while connections.join_next().await.is_some() {} };
        if timeout(Duration::from_secs(30), drain).await.is_err() {
            connections.abort_all();
        }
        tracing::info!("hl7 listener stopped");
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Result<Option<Vec<u8>>, Closed>> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let r = read_frame(
                &mut reader,
                max,
                Duration::from_secs(5),
                Duration::from_secs(5),
            )
            .await;
            let done = !matches!(r, Ok(Some(_)));
            out.push(r);
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn frames_are_read_across_buffers_and_bounded() {
        let got = frames(b"\x0bMSH|a\rPID|b\x1c\x0d\r\n\x0bMSH|c\x1c\x0d", 100).await;
        assert_eq!(
            got,
            vec![
                Ok(Some(b"MSH|a\rPID|b".to_vec())),
                Ok(Some(b"MSH|c".to_vec())),
                Ok(None)
            ]
        );
        assert_eq!(
            frames(b"\x0b0123456789\x1c\x0d", 5).await,
            vec![Err(Closed::TooLarge)]
        );
        assert_eq!(
            frames(b"GET / HTTP/1.1", 100).await,
            vec![Err(Closed::NotMllp)]
        );
        assert_eq!(
            frames(b"\x0bMSH|a\x1cX", 100).await,
            vec![Err(Closed::NotMllp)]
        );
        // The peer hung up inside a frame.
        assert_eq!(frames(b"\x0bMSH|a", 100).await, vec![Err(Closed::Io)]);
    }

    #[tokio::test]
    async fn a_slow_sender_is_cut_off() {
        let (client, server) = tokio::io::duplex(64);
        let mut client = client;
        client.write_all(b"\x0bMSH|").await.unwrap();
        let mut reader = BufReader::new(server);
        let r = read_frame(
            &mut reader,
            100,
            Duration::from_millis(50),
            Duration::from_secs(300),
        )
        .await;
        assert_eq!(r, Err(Closed::Slow));
        drop(client);
    }
}
