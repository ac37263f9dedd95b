//! The output gate of one object. Each turn with outputs (a reply, socket
//! frames, messages to other objects) takes a number; its outputs are
//! released once its ticket resolves *and* every earlier turn's outputs are
//! released. Tickets can resolve on different syncer threads, and a read-only
//! turn's ticket is often resolved at once, so without this queue a later
//! reply could overtake an earlier one whose write is not yet confirmed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::ctx::Action;
use super::slot::lock;
use crate::error::Result;

#[derive(Default)]
pub(crate) struct OutputGate {
    st: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Last number handed out.
    issued: u64,
    /// Last number whose outputs were released.
    released: u64,
    waiting: BTreeMap<u64, (Result<()>, Vec<Action>)>,
}

impl OutputGate {
    /// Numbers a turn's outputs, in turn order.
    pub(crate) fn reserve(&self) -> u64 {
        let mut st = lock(&self.st);
        st.issued += 1;
        st.issued
    }

    /// Turn `n`'s ticket resolved with `gate`: release its outputs, and any
    /// later ones that were waiting behind it. Actions only send on channels
    /// or queue events, so they run under the lock, which keeps their order.
    pub(crate) fn complete(&self, n: u64, gate: Result<()>, held: Vec<Action>) {
        let mut st = lock(&self.st);
        st.waiting.insert(n, (gate, held));
        loop {
            let next = st.released + 1;
            let Some((gate, held)) = st.waiting.remove(&next) else {
                break;
            };
            st.released = next;
            for a in held {
                a(gate.clone());
            }
        }
    }
}
