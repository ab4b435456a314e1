//! A command module's stdin: WASI preview 1 `fd_read` on fd 0, served by the host.
//!
//! A fresh instance reads a fixed buffer (`init` and one `decide`) and then end of file. A session (a module
//! kept alive across messages) reads one request at a time: when the module asks for more input after
//! answering, the host knows the answer is complete. That read is the boundary between two messages: the
//! answer, its log lines and the fuel it used go back to the worker, and the next request arrives with a new
//! fuel budget and deadline. Other file descriptors cannot be read (the sandbox has no files).

use std::sync::mpsc::{Receiver, SyncSender};

use wasmtime::{AsContextMut, Caller, Linker};

use super::{CommandState, Turn};
use crate::filter::limits::Limits;
use crate::filter::limits::deadline_ticks;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;

/// Where a command instance's stdin comes from.
pub(crate) enum Input {
    /// A fixed buffer, then end of file.
    Fixed { bytes: Vec<u8>, pos: usize },
    /// One request at a time from the worker; answers go back at each boundary.
    Session(SessionLink),
}

/// The guest side of a session's channels.
pub(crate) struct SessionLink {
    pub(crate) requests: Receiver<Vec<u8>>,
    pub(crate) turns: SyncSender<Turn>,
    pub(crate) limits: Limits,
    /// The request being read or answered, if any.
    pub(crate) current: Option<(Vec<u8>, usize)>,
}

impl Input {
    /// Copy up to `want` bytes of input that is already there.
    fn take(&mut self, want: usize) -> &[u8] {
        let (bytes, pos) = match self {
            Input::Fixed { bytes, pos } => (bytes, pos),
            Input::Session(SessionLink {
                current: Some((bytes, pos)),
                ..
            }) => (bytes, pos),
            Input::Session(_) => return &[],
        };
        let start = (*pos).min(bytes.len());
        let end = start.saturating_add(want).min(bytes.len());
        *pos = end;
        &bytes[start..end]
    }

    /// Bytes that can be read now without waiting.
    pub(crate) fn ready(&self) -> u64 {
        match self {
            Input::Fixed { bytes, pos } => bytes.len().saturating_sub(*pos) as u64,
            Input::Session(link) => link
                .current
                .as_ref()
                .map_or(0, |(b, pos)| b.len().saturating_sub(*pos) as u64),
        }
    }

    fn exhausted(&self) -> bool {
        match self {
            Input::Fixed { bytes, pos } => *pos >= bytes.len(),
            Input::Session(link) => link.current.as_ref().is_none_or(|(b, pos)| *pos >= b.len()),
        }
    }
}

/// Replace WASI's `fd_read` with the host's stdin (the rest of WASI preview 1 is wasmtime-wasi's).
pub(crate) fn add_to_linker(linker: &mut Linker<CommandState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "fd_read", fd_read)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn fd_read(
    mut caller: Caller<'_, CommandState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> wasmtime::Result<i32> {
    if fd != 0 {
        return Ok(ERRNO_BADF);
    }
    if caller.data().input.exhausted() {
        next_request(&mut caller)?;
    }
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Ok(ERRNO_FAULT);
    };
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let mut total: u32 = 0;
    for i in 0..u32::try_from(iovs_len).unwrap_or(0) {
        let at = (iovs as u32 as usize).saturating_add(i as usize * 8);
        let (Some(ptr), Some(len)) = (read_u32(mem, at), read_u32(mem, at + 4)) else {
            return Ok(ERRNO_FAULT);
        };
        let Some(dest) = mem.get_mut(ptr as usize..(ptr as usize).saturating_add(len as usize)) else {
            return Ok(ERRNO_FAULT);
        };
        let chunk = state.input.take(dest.len());
        dest[..chunk.len()].copy_from_slice(chunk);
        total += chunk.len() as u32;
        if chunk.len() < len as usize {
            break;
        }
    }
    let Some(out) = mem.get_mut(nread as u32 as usize..(nread as u32 as usize).saturating_add(4)) else {
        return Ok(ERRNO_FAULT);
    };
    out.copy_from_slice(&total.to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

fn read_u32(mem: &[u8], at: usize) -> Option<u32> {
    let bytes = mem.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The module wants input and has read everything it was given. For a session this is a message boundary:
/// hand the answer to the previous request back, then wait for the next request (none: end of file).
fn next_request(caller: &mut Caller<'_, CommandState>) -> wasmtime::Result<()> {
    let fuel_spent = match &caller.data().input {
        Input::Session(link) => link.limits.fuel_spent(&*caller),
        Input::Fixed { .. } => None,
    };
    let state = caller.data_mut();
    let Input::Session(link) = &mut state.input else {
        return Ok(()); // a fixed buffer: end of file
    };
    if link.current.take().is_some() {
        let turn = Turn::answered(&state.stdout, &state.stderr, &link.limits, fuel_spent);
        if link.turns.send(turn).is_err() {
            return Ok(()); // the worker is gone: end of file, the module exits
        }
    }
    let Input::Session(link) = &mut caller.data_mut().input else {
        return Ok(());
    };
    let Ok(request) = link.requests.recv() else {
        return Ok(()); // the session is closing: end of file
    };
    let limits = link.limits.clone();
    link.current = Some((request, 0));
    caller.data_mut().wait.restart();
    limits.refuel(&mut *caller)?;
    caller
        .as_context_mut()
        .set_epoch_deadline(deadline_ticks(limits.timeout));
    Ok(())
}
