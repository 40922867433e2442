//! Child processes that never outlive the test.

use std::{
    io,
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus},
    sync::{Mutex, OnceLock, mpsc},
};

/// A child process tied to this process: killed (SIGKILL) and reaped when
/// dropped, and — through `PR_SET_PDEATHSIG` — killed by the kernel when
/// this process dies, however it dies. Children are forked from one
/// long-lived thread, because the death signal follows the thread that
/// forked, not the process.
#[derive(Debug)]
pub struct TiedChild {
    child: Child,
}

impl TiedChild {
    /// Spawns `cmd` tied to this process.
    pub fn spawn(mut cmd: Command) -> io::Result<TiedChild> {
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl.
                if libc::getppid() == 1 {
                    return Err(io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
        spawn_from_spawner(cmd).map(|child| TiedChild { child })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap. Returns how it ended.
    pub fn kill9(&mut self) -> io::Result<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for TiedChild {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

fn spawn_from_spawner(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("chaos-spawner".into())
                .spawn(move || {
                    // The sender lives in a static: this thread ends only
                    // with the process.
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("start the chaos spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap()
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn killed_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut c = TiedChild::spawn(cmd).unwrap();
        assert!(c.is_running());
        let pid = c.id() as libc::pid_t;
        drop(c);
        // Reaped: the pid no longer names our child.
        // SAFETY: kill with signal 0 only checks existence.
        let r = unsafe { libc::kill(pid, 0) };
        assert_eq!(r, -1, "the child {pid} is gone");
    }
}
