//! A TCP proxy on loopback that can be cut, slowed and restored: how the soak (and the tests)
//! make one replica's Redis or Postgres fail, or a replica's database traffic slow, while the
//! services themselves, shared with everything else on the machine, stay up. Given several
//! targets it is also the soak's load balancer: each connection goes to the next target that
//! accepts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

struct Shared {
    targets: Vec<SocketAddr>,
    next: AtomicUsize,
    open: AtomicBool,
    /// Added before each chunk is passed on, either way, µs.
    delay_micros: AtomicU64,
    pipes: parking_lot::Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        Proxy::balance(vec![target]).await
    }

    /// Listens on a free loopback port and forwards each connection to the next of `targets`
    /// (in turn) that accepts it.
    pub async fn balance(targets: Vec<SocketAddr>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            targets,
            next: AtomicUsize::new(0),
            open: AtomicBool::new(true),
            delay_micros: AtomicU64::new(0),
            pipes: parking_lot::Mutex::default(),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !s.open.load(Ordering::SeqCst) {
                    // Cut: the connection is closed as soon as it is made.
                    drop(inbound);
                    continue;
                }
                let _ = inbound.set_nodelay(true);
                let pipe = tokio::spawn(pipe(s.clone(), inbound));
                let mut pipes = s.pipes.lock();
                pipes.retain(|h| !h.is_finished());
                pipes.push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Ok(Proxy {
            addr,
            shared,
            accept,
        })
    }

    /// `url` (`scheme://[user@]host:port/rest`) with this proxy's address in place of host and
    /// port.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!("{scheme}://{}{}{path}", user.unwrap_or_default(), self.addr)
    }

    /// Closes every connection through the proxy and closes each new one at once: what a
    /// client sees when its server stops.
    pub fn cut(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        for pipe in self.shared.pipes.lock().drain(..) {
            pipe.abort();
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }

    /// Delays every chunk passed on, either way, by `delay` (zero: none).
    pub fn slow(&self, delay: Duration) {
        self.shared
            .delay_micros
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pipe(shared: Arc<Shared>, inbound: TcpStream) {
    let n = shared.targets.len();
    let first = shared.next.fetch_add(1, Ordering::Relaxed);
    let mut outbound = None;
    for i in 0..n {
        if let Ok(s) = TcpStream::connect(shared.targets[(first + i) % n]).await {
            outbound = Some(s);
            break;
        }
    }
    let Some(outbound) = outbound else { return };
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    // Either side closing ends both.
    tokio::select! {
        _ = copy(&shared, ri, wo) => {}
        _ = copy(&shared, ro, wi) => {}
    }
}

async fn copy(
    shared: &Shared,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = shared.delay_micros.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The `host:port` of a URL such as `redis://127.0.0.1:6379/` or
/// `postgres://root@127.0.0.1:5432/test`, resolved.
pub fn address_of(url: &str) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    host_port.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no address for {url}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_keep_their_user_and_path() {
        let p = Proxy::start("127.0.0.1:9".parse().unwrap()).await.unwrap();
        let a = p.addr;
        assert_eq!(
            p.url_for("postgres://root@127.0.0.1:5432/test"),
            format!("postgres://root@{a}/test")
        );
        assert_eq!(
            p.url_for("redis://127.0.0.1:6379/"),
            format!("redis://{a}/")
        );
        assert_eq!(
            address_of("postgres://root@127.0.0.1:5432/test").unwrap(),
            "127.0.0.1:5432".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn a_cut_closes_what_is_open_and_refuses_what_comes() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let p = Proxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        p.cut();
        assert_eq!(c.read(&mut got).await.unwrap_or(0), 0, "closed");
        let mut again = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(again.read(&mut got).await.unwrap_or(0), 0, "refused");

        p.restore();
        p.slow(Duration::from_millis(50));
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let t = std::time::Instant::now();
        c.write_all(b"pong").await.unwrap();
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "both ways slowed"
        );
    }
}
