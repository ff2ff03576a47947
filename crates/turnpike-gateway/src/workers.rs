//! Worker threads: the data plane runs on N threads, each with its own single-threaded runtime (like nginx's
//! worker processes: no work stealing, no cross-core wakeups on the hot path). Listener sockets are shared, each
//! worker accepts from every listener; upstream connection pools are shared across workers.

use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The running worker threads.
pub(crate) struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` worker threads (at least one).
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new().name(format!("turnpike-worker-{i}")).spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime cancels what is left (connections past the drain deadline).
                drop(runtime);
            })?;
            workers.push(Worker { handle, stop: Some(stop), thread: Some(thread) });
        }
        Ok(Self { workers })
    }

    /// The runtime handles, one per worker.
    pub(crate) fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.workers.iter().map(|w| &w.handle)
    }

    /// How many workers run.
    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    /// Stops every worker, cancelling its remaining tasks, and waits for the threads to end.
    pub(crate) fn stop(&mut self) {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}
