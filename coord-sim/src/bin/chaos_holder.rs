//! A lock holder process for the chaos test on a real Redis
//! (`coord-sim/tests/chaos_redis.rs`).
//!
//! ```text
//! chaos_holder --redis redis://127.0.0.1:<proxy>/0 --fence 127.0.0.1:<port> \
//!     --name h0 --key chaos [--ttl-ms 1500] [--ignore-lost --hold-ms 6000]
//! ```
//!
//! Loops: acquire the lock `key` (short TTL, auto-extension), report the
//! grant to the fence server, write to the fenced resource with the token
//! while `is_held()` (stopping when `lost()` fires), release, repeat. With
//! `--ignore-lost` (a deliberately broken holder, to prove the checkers catch
//! it) it keeps writing for `--hold-ms` whatever the lease says. It exits
//! when its stdin closes (the test is gone) or the fence server goes away.
//! Every error a lock or release call returns is reported to the fence
//! server too (how many, of which kind, are part of a run's verdict).
//!
//! Under `--cfg madsim` it is an empty program: it needs real sockets.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    real::main();
}

#[cfg(not(madsim))]
mod real {
    use std::{collections::HashMap, sync::Arc, time::Duration};

    use coord_api::{Client, LeaseOptions};
    use coord_redis::{RedisBackend, RedisConfig};
    use coord_sim::chaos::mono_ns;
    use rand::Rng;
    use tokio::{
        io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
        net::TcpStream,
        time::Instant,
    };

    struct Args {
        redis: String,
        fence: String,
        name: String,
        key: String,
        ttl: Duration,
        ignore_lost: bool,
        hold: Option<Duration>,
    }

    fn args() -> Args {
        let mut m: HashMap<String, String> = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if a == "--ignore-lost" {
                m.insert(a, "1".into());
            } else {
                let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
                m.insert(a, v);
            }
        }
        let need = |k: &str| {
            m.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("missing {k} (see the usage in chaos_holder.rs)"))
        };
        let ms = |k: &str| m.get(k).map(|v| Duration::from_millis(v.parse().expect(k)));
        Args {
            redis: need("--redis"),
            fence: need("--fence"),
            name: need("--name"),
            key: need("--key"),
            ttl: ms("--ttl-ms").unwrap_or(Duration::from_millis(1500)),
            ignore_lost: m.contains_key("--ignore-lost"),
            hold: ms("--hold-ms"),
        }
    }

    fn verbose() -> bool {
        std::env::var_os("COORD_CHAOS_VERBOSE").is_some()
    }

    pub fn main() {
        let args = args();
        // The test holds our stdin: when it goes away, so do we.
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            std::process::exit(0);
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        if let Err(e) = rt.block_on(run(args)) {
            if verbose() {
                eprintln!("chaos_holder: {e}");
            }
            std::process::exit(1);
        }
    }

    struct Fence {
        w: tokio::net::tcp::OwnedWriteHalf,
        r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    }

    impl Fence {
        async fn send(&mut self, line: String) -> std::io::Result<()> {
            self.w.write_all(line.as_bytes()).await
        }

        /// Reports an error a call returned: `retryable`, `timeout` (a wait
        /// that ended ungranted) or `other`, with the error's text.
        async fn error(&mut self, op: &str, e: &coord_api::Error) -> std::io::Result<()> {
            let class = match e {
                coord_api::Error::Timeout { .. } => "timeout",
                e if e.is_retryable() => "retryable",
                _ => "other",
            };
            let text = e.to_string().replace('\n', " ");
            self.send(format!("error {op} {class} {text}\n")).await
        }

        /// A fenced write; whether the resource accepted it.
        async fn write(&mut self, token: u64, seq: u64, checked: u64) -> std::io::Result<bool> {
            self.send(format!("write {token} {seq} {checked}\n"))
                .await?;
            let mut line = String::new();
            if self.r.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::other("the fence server went away"));
            }
            Ok(line.trim() == "ok")
        }
    }

    async fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
        let conn = TcpStream::connect(&a.fence).await?;
        conn.set_nodelay(true)?;
        let (r, w) = conn.into_split();
        let mut fence = Fence {
            w,
            r: BufReader::new(r),
        };
        fence.send(format!("hello {} {}\n", a.name, a.key)).await?;

        let config: RedisConfig = RedisConfig::builder()
            .with_url(a.redis.clone())
            .namespace("chaos")
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        // The proxy may be failing right now: keep trying.
        let backend = loop {
            match RedisBackend::connect(config.clone()).await {
                Ok(b) => break b,
                Err(e) => {
                    if verbose() {
                        eprintln!("{}: connect: {e}", a.name);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let opts = LeaseOptions::default()
            .ttl(a.ttl)
            .wait_timeout(Some(Duration::from_secs(3)))
            .retry_delay(Duration::from_millis(200))
            .auto_extend(true);
        let client = Client::builder(Arc::new(backend))
            .instance_id(&a.name)?
            .lease_options(opts)
            .build();
        let lock = client.lock(&a.key);
        let mut rng = rand::rng();
        loop {
            let sent = mono_ns();
            let guard = match lock.lock().await {
                Ok(g) => g,
                Err(e) => {
                    if verbose() {
                        eprintln!("{}: lock: {e}", a.name);
                    }
                    fence.error("lock", &e).await?;
                    tokio::time::sleep(Duration::from_millis(rng.random_range(10..60))).await;
                    continue;
                }
            };
            let received = mono_ns();
            let token = guard.token().get();
            fence
                .send(format!("grant {token} {sent} {received}\n"))
                .await?;
            let hold = a
                .hold
                .unwrap_or_else(|| Duration::from_millis(rng.random_range(150..1500)));
            let end = Instant::now() + hold;
            let mut seq = 0;
            let mut lost = false;
            while Instant::now() < end {
                // Read the clock *before* asking: is_held() true afterwards
                // means the lease was valid at `checked`.
                let checked = mono_ns();
                if !a.ignore_lost && !guard.is_held() {
                    lost = true;
                    break;
                }
                fence.write(token, seq, checked).await?;
                seq += 1;
                let pause = tokio::time::sleep(Duration::from_millis(rng.random_range(10..40)));
                if a.ignore_lost {
                    pause.await;
                } else {
                    tokio::select! {
                        _ = pause => {}
                        _ = guard.lost() => {}
                    }
                }
            }
            if lost || !guard.is_held() {
                fence.send(format!("lost {token}\n")).await?;
                drop(guard);
            } else {
                let held = match tokio::time::timeout(Duration::from_secs(2), guard.release()).await
                {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        fence.error("release", &e).await?;
                        false
                    }
                    Err(_) => false,
                };
                fence
                    .send(format!("released {token} {}\n", u8::from(held)))
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..80))).await;
        }
    }
}
