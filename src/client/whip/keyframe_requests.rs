//! Counting the keyframe requests (PLI, FIR) a server sends the publisher.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::TaggedPacket;
use rtc::interceptor::{Interceptor, Packet as InterceptorPacket, StreamInfo};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;

/// Counts keyframe requests arriving from the server.
#[derive(Debug, Default)]
pub(super) struct KeyframeRequestCounters {
    /// Inbound Picture Loss Indications.
    pub(super) plis: AtomicU64,
    /// Inbound Full Intra Requests.
    pub(super) firs: AtomicU64,
}

/// Interceptor that counts inbound PLI and FIR packets and passes everything through
/// unchanged. It sits last in the read walk, after the stock interceptors.
pub(super) struct KeyframeRequestTap {
    /// Shared with the publisher, which reports them in stats.
    counters: Arc<KeyframeRequestCounters>,
    /// Inbound packets waiting to continue the read walk.
    read: VecDeque<TaggedPacket>,
    /// Outbound packets waiting to continue the write walk.
    write: VecDeque<TaggedPacket>,
}

impl KeyframeRequestTap {
    /// A tap counting into `counters`.
    pub(super) fn new(counters: Arc<KeyframeRequestCounters>) -> Self {
        Self {
            counters,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if any.is::<PictureLossIndication>() {
                    self.counters.plis.fetch_add(1, Ordering::Relaxed);
                } else if any.is::<FullIntraRequest>() {
                    self.counters.firs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
