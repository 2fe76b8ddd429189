//! The ring buffer of packets logged by `log="true"` rules, read as the
//! programs fill it.

use aya::maps::{MapData, RingBuf};
use hookd_bpf::layout::FwEvent;
use tokio::io::unix::AsyncFd;

/// Reads the ring buffer until hookd stops, handing each batch of events
/// to `on_batch`.
pub async fn read(ring: RingBuf<MapData>, mut on_batch: impl FnMut(Vec<FwEvent>)) {
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged
    // for as long as the AsyncFd owns the RingBuf.
    let registered =
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %e, "cannot wait on the event ring buffer: logged packets are not reported");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "event ring buffer failed");
                return;
            }
        };
        let mut batch = Vec::new();
        while let Some(item) = guard.get_inner_mut().next() {
            if let Some(ev) = FwEvent::from_bytes(&item) {
                batch.push(ev);
            }
        }
        guard.clear_ready();
        on_batch(batch);
    }
}
