//! The in-memory lock cycle of `benches/lock.rs` as a plain program, for
//! instruction counts (`valgrind --tool=callgrind`), which stay the same
//! whatever else the machine is doing:
//!
//! ```text
//! cargo build --release -p coord-benches --example probe
//! valgrind --tool=callgrind target/release/examples/probe mutex 20000
//! valgrind --tool=callgrind target/release/examples/probe off 20000   # auto-extend off
//! valgrind --tool=callgrind target/release/examples/probe on 20000    # auto-extend on
//! ```
//!
//! The loop never yields to the runtime, so with auto-extension on the
//! renewal queue's task never runs: what is counted is the grant and release
//! themselves, the queue's bookkeeping included.

use std::{hint::black_box, sync::Arc};

use coord::{Client, Namespace, memory::MemoryBackend};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "on".to_owned());
    let n: u64 = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Arc::new(MemoryBackend::new(Namespace::default())));
    let lock = client.lock("bench/job").auto_extend(which == "on");
    let mutex = tokio::sync::Mutex::new(0u64);
    rt.block_on(async {
        for _ in 0..n {
            if which == "mutex" {
                let mut guard = mutex.lock().await;
                *guard += 1;
                black_box(&*guard);
            } else {
                let guard = lock.try_lock().await.unwrap().expect("uncontended");
                black_box(guard.token());
                assert!(guard.release().await.unwrap());
            }
        }
    });
}
