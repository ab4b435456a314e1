//! A command module kept alive across messages: one instance on a thread of its own, fed one request at a
//! time through its stdin, so a language runtime (Go's, say) starts once per session instead of once per
//! message.
//!
//! The worker sends a request and waits for the [`Turn`] the module's next stdin read produces (see
//! `stdin.rs`). Limits are per request: fuel and the deadline are reset when a request is handed over, and a
//! module that neither answers nor uses CPU (blocked in a host call) is given up on after the deadline plus a
//! grace period. A session whose instance ended (trap, exit, limit) is not used again.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use wasmtime::InstancePre;

use super::stdin::{Input, SessionLink};
use super::{CommandState, Turn, init_request, run_to_end};
use crate::filter::failure::{CallFailure, FailureKind};
use crate::filter::limits::Limits;

/// Extra time beyond the per-message deadline before a silent module is given up on.
const GRACE: Duration = Duration::from_secs(2);

/// A live command instance on its own thread.
pub(crate) struct Session {
    requests: Option<SyncSender<Vec<u8>>>,
    turns: Receiver<Turn>,
    timeout: Duration,
    ended: bool,
    /// Requests answered so far (`init` included).
    pub(crate) calls: u64,
}

impl Session {
    /// Start an instance and send it `init`. Returns the session (if the instance is still alive) and the
    /// turn answering `init`.
    pub(crate) fn start(
        pre: &InstancePre<CommandState>,
        limits: &Limits,
        config: &[(String, String)],
        stopping: Arc<AtomicBool>,
    ) -> (Option<Session>, Turn) {
        let (request_tx, request_rx) = mpsc::sync_channel::<Vec<u8>>(1);
        let (turn_tx, turn_rx) = mpsc::sync_channel::<Turn>(1);
        let link = SessionLink {
            requests: request_rx,
            turns: turn_tx.clone(),
            limits: limits.clone(),
            current: None,
        };
        let thread_pre = pre.clone();
        let thread_limits = limits.clone();
        let spawned = std::thread::Builder::new()
            .name("redrive-command".into())
            .spawn(move || run_session(&thread_pre, &thread_limits, link, &turn_tx, stopping));
        if let Err(e) = spawned {
            return (
                None,
                failed(CallFailure::new(
                    FailureKind::CouldNotStart,
                    format!("cannot start a thread for the module: {e}"),
                )),
            );
        }
        let mut session = Session {
            requests: Some(request_tx),
            turns: turn_rx,
            timeout: limits.timeout + GRACE,
            ended: false,
            calls: 0,
        };
        let turn = session.call(init_request(config).into_bytes());
        let session = (!session.ended).then_some(session);
        (session, turn)
    }

    /// Send one request and wait for its turn.
    pub(crate) fn call(&mut self, request: Vec<u8>) -> Turn {
        self.calls += 1;
        let sent = self.requests.as_ref().is_some_and(|tx| tx.send(request).is_ok());
        let turn = match self.turns.recv_timeout(if sent { self.timeout } else { GRACE }) {
            Ok(turn) => turn,
            Err(RecvTimeoutError::Timeout) => failed(CallFailure::new(
                FailureKind::Timeout,
                format!(
                    "timed out: no answer within {} (the module is blocked outside WebAssembly, e.g. sleeping)",
                    humantime::format_duration(self.timeout)
                ),
            )),
            Err(RecvTimeoutError::Disconnected) => {
                failed(CallFailure::new(FailureKind::Trap, "the module's instance is gone"))
            }
        };
        if turn.ended || turn.answers.is_err() {
            self.close();
        }
        turn
    }

    /// True when the instance can take another request.
    pub(crate) fn is_alive(&self) -> bool {
        !self.ended
    }

    /// Close stdin: the module reads end of file and exits; its thread ends on its own.
    fn close(&mut self) {
        self.ended = true;
        self.requests = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The thread is not joined: a module stuck in a host call must not hold up the worker.
        self.close();
    }
}

fn failed(failure: CallFailure) -> Turn {
    Turn {
        answers: Err(failure),
        fuel: None,
        logs: Vec::new(),
        ended: true,
    }
}

/// The session thread: run the module until it exits or traps, then report how it ended.
fn run_session(
    pre: &InstancePre<CommandState>,
    limits: &Limits,
    link: SessionLink,
    turns: &SyncSender<Turn>,
    stopping: Arc<AtomicBool>,
) {
    let (answers, fuel, logs) = run_to_end(pre, limits, Input::Session(link), stopping);
    let answers = match answers {
        Ok(lines) if lines.is_empty() => Err(CallFailure::new(
            FailureKind::BadOutput,
            "it exited: a command filter must answer every request and keep reading stdin until it ends \
             (guest-sdk/wit/command.schema.json)",
        )),
        other => other,
    };
    let _ = turns.send(Turn {
        answers,
        fuel,
        logs,
        ended: true,
    });
}
