//! The SQLite writer thread: owns the only write connection and
//! group-commits whatever jobs are queued into one transaction (one WAL
//! fsync for the whole group). Each job runs in its own savepoint, so a job
//! that fails is rolled back alone and the others still commit. Replies are
//! sent only after `COMMIT` returned, so "ok" means durable.

use std::sync::Mutex;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::storage::{Result, StorageError};

/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 512;
/// Queue depth before submitters wait (back-pressure).
const QUEUE: usize = 4096;

trait WriteJob: Send {
    /// Run inside the group transaction; `false` if the job failed (its
    /// savepoint is then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Deliver the outcome once the transaction committed (or failed).
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct Job<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let out = match self.f.take() {
            Some(f) => f(conn),
            None => Err(StorageError::Backend("write job ran twice".into())),
        };
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        let result = match (self.out, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(StorageError::Backend("write job did not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

enum Msg {
    Job(Box<dyn WriteJob>),
    Close(oneshot::Sender<()>),
}

/// Handle to the writer thread.
pub(super) struct Writer {
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Start the thread that owns `conn`.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("satchel-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))?;
        Ok(Writer {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Run `f` in the next group transaction; resolves after the commit.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            f: Some(f),
            out: None,
            reply,
        };
        self.tx
            .send(Msg::Job(Box::new(job)))
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Commit everything queued before this call, then stop the thread.
    pub(super) async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Msg>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = Vec::new();
        let mut close = None;
        match first {
            Msg::Job(j) => jobs.push(j),
            Msg::Close(c) => close = Some(c),
        }
        while close.is_none() && jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(Msg::Close(c)) => close = Some(c),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            run_group(&mut conn, jobs);
        }
        if let Some(done) = close {
            rx.close();
            // Fail whatever raced in after the close request.
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Job(j) => j.finish(Err(StorageError::Closed)),
                    Msg::Close(c) => {
                        let _ = c.send(());
                    }
                }
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
            let _ = done.send(());
            return;
        }
    }
}

fn run_group(conn: &mut Connection, mut jobs: Vec<Box<dyn WriteJob>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = StorageError::from(e);
        for j in jobs {
            j.finish(Err(err.clone()));
        }
        return;
    }
    let mut broken: Option<StorageError> = None;
    for job in jobs.iter_mut() {
        if broken.is_some() {
            break;
        }
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            broken = Some(e.into());
            break;
        }
        let ok = job.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (e.g. disk full).
            broken = Some(StorageError::Backend("transaction aborted".into()));
            break;
        }
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            broken = Some(e.into());
        }
    }
    let committed = match broken {
        Some(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
        None => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
    };
    for j in jobs {
        j.finish(committed.clone());
    }
}
