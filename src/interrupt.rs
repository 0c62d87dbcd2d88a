//! Stopping on SIGTERM (a Job's deadline, a deleted pod, `kubectl delete job`): the running operation is
//! told to stop, stops its child processes (`pg_dump`, `pg_restore`), drops its step (which removes its
//! scratch and partial files) and says where it stopped and what is left. A restore also gives its Lease
//! back. Kubernetes sends SIGKILL after the pod's grace period: all of this must fit in it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static SCRATCH: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
static STEP: Mutex<Option<String>> = Mutex::new(None);
static STOPPING: AtomicBool = AtomicBool::new(false);
static STOP: Notify = Notify::const_new();

/// A child process stopped with the operation; forgotten when dropped (the child has been waited for).
pub struct Tracked(u32);

impl Drop for Tracked {
    fn drop(&mut self) {
        CHILDREN
            .lock()
            .expect("children lock")
            .retain(|p| *p != self.0);
    }
}

/// Registers a child process to stop on SIGTERM.
pub fn track(child: &std::process::Child) -> Tracked {
    CHILDREN.lock().expect("children lock").push(child.id());
    Tracked(child.id())
}

/// A scratch file removed on SIGTERM (its owner may be a thread that never gets to drop it), and when
/// the guard is dropped.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        SCRATCH
            .lock()
            .expect("scratch lock")
            .retain(|p| *p != self.0);
    }
}

pub fn scratch(path: std::path::PathBuf) -> Scratch {
    SCRATCH.lock().expect("scratch lock").push(path.clone());
    Scratch(path)
}

/// What the operation is doing now and, if it stopped here, what is left (the log's last word).
pub fn step(what: impl Into<String>) {
    *STEP.lock().expect("step lock") = Some(what.into());
}

pub fn current_step() -> Option<String> {
    STEP.lock().expect("step lock").clone()
}

/// Called on SIGTERM: wakes whoever waits in [`requested`] and stops the child processes.
pub fn request_stop() {
    STOPPING.store(true, Ordering::SeqCst);
    STOP.notify_waiters();
    for path in SCRATCH.lock().expect("scratch lock").iter() {
        let _ = std::fs::remove_file(path);
    }
    for pid in CHILDREN.lock().expect("children lock").iter() {
        if let Ok(pid) = i32::try_from(*pid) {
            // SAFETY: sending a signal has no memory effects; the pid is one of our own children.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// Resolves once a stop was requested.
pub async fn requested() {
    loop {
        let notified = STOP.notified();
        if STOPPING.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}
