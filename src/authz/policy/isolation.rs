//! Isolated evaluation: a fixed pool of evaluator threads, so that a caller
//! waits at most its budget even when a builtin call cannot be interrupted.

use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::{Evaluation, PolicyFailure};

type Reply = Result<regorus::Value, PolicyFailure>;

struct Job {
    evaluation: Evaluation,
    /// When the caller stops waiting; a job dequeued later is dropped.
    deadline: Instant,
    reply: SyncSender<Reply>,
}

/// The evaluator threads of one policy set. Dropping it closes the queue;
/// each thread exits after its current evaluation.
pub(super) struct Workers {
    queue: SyncSender<Job>,
}

impl Workers {
    /// Starts `count` threads behind a queue of `queue` waiting jobs, at
    /// least one: a zero-capacity channel would hand a job over only while
    /// a worker happens to be blocked in `recv`.
    pub(super) fn start(count: NonZeroUsize, queue: usize) -> std::io::Result<Workers> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..count.get() {
            let receiver = receiver.clone();
            thread::Builder::new()
                .name(format!("policy-eval-{index}"))
                .spawn(move || serve(&receiver))?;
        }
        Ok(Workers { queue: sender })
    }

    /// Queues an evaluation and waits for its result until `deadline`.
    pub(super) fn run(&self, evaluation: Evaluation, deadline: Instant) -> Reply {
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            evaluation,
            deadline,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                return Err(PolicyFailure::Overloaded)
            }
        }

        let wait = deadline.saturating_duration_since(Instant::now());
        match result.recv_timeout(wait) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => Err(PolicyFailure::BudgetExceeded),
            // The worker dropped the job: it was dequeued after the deadline.
            Err(RecvTimeoutError::Disconnected) => Err(PolicyFailure::BudgetExceeded),
        }
    }
}

fn serve(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let next = match receiver.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else {
            return;
        };
        if Instant::now() >= job.deadline {
            continue;
        }
        // The caller may have given up already; a failed send is expected then.
        let _ = job.reply.send(job.evaluation.run());
    }
}
