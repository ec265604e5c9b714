//! `metallb.v1.AssignmentUpdate`, written by hand instead of generated (`build.rs` maps the
//! message here) for one reason: a sender may put in place of `update` a snapshot or delta it
//! encoded itself. The allocator keeps each route encoded once and sends the same bytes on
//! every stream that carries the route, instead of copying and encoding thousands of routes
//! per stream. On the wire the message is exactly what `announce.proto` says; decoding never
//! sets `encoded`.

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{self, DecodeContext, WireType},
};

use crate::pb::TraceContext;

/// One message of an assignment stream.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct AssignmentUpdate {
    /// Increases by one per message on a stream; a gap means messages were lost.
    pub sequence: u64,
    /// Trace context of the change that caused this message.
    pub trace: Option<TraceContext>,
    /// The content.
    pub update: Option<assignment_update::Update>,
    /// The content, encoded by the sender: sent in place of `update` when set.
    pub encoded: Option<EncodedUpdate>,
}

/// The `update` oneof of `AssignmentUpdate`.
pub mod assignment_update {
    use crate::pb::{AssignmentDelta, Heartbeat, NodeAssignments};

    /// The content of an `AssignmentUpdate`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Update {
        /// Everything the node must announce now.
        #[prost(message, tag = "3")]
        Snapshot(NodeAssignments),
        /// What changed since the previous message.
        #[prost(message, tag = "4")]
        Delta(AssignmentDelta),
        /// Nothing changed: the allocator still counts this node alive (layer 2 fencing).
        #[prost(message, tag = "5")]
        Heartbeat(Heartbeat),
    }
}

/// A snapshot or a delta, encoded.
#[derive(Clone, PartialEq, Debug)]
pub struct EncodedUpdate {
    tag: u32,
    body: Bytes,
}

impl EncodedUpdate {
    /// A `NodeAssignments` message's encoding, as the `snapshot` of the update.
    pub fn snapshot(body: Bytes) -> Self {
        Self { tag: 3, body }
    }

    /// An `AssignmentDelta` message's encoding, as the `delta` of the update.
    pub fn delta(body: Bytes) -> Self {
        Self { tag: 4, body }
    }

    /// Whether it is a snapshot.
    pub fn is_snapshot(&self) -> bool {
        self.tag == 3
    }

    fn encode(&self, buf: &mut impl BufMut) {
        encoding::encode_key(self.tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.body.len() as u64, buf);
        buf.put_slice(&self.body);
    }

    fn encoded_len(&self) -> usize {
        encoding::key_len(self.tag)
            + encoding::encoded_len_varint(self.body.len() as u64)
            + self.body.len()
    }
}

impl Message for AssignmentUpdate {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.sequence != 0 {
            encoding::uint64::encode(1, &self.sequence, buf);
        }
        if let Some(trace) = &self.trace {
            encoding::message::encode(2, trace, buf);
        }
        match (&self.encoded, &self.update) {
            (Some(encoded), _) => encoded.encode(buf),
            (None, Some(update)) => update.encode(buf),
            (None, None) => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        const MESSAGE: &str = "AssignmentUpdate";
        let field = |name: &'static str| {
            move |mut error: DecodeError| {
                error.push(MESSAGE, name);
                error
            }
        };
        match tag {
            1 => encoding::uint64::merge(wire_type, &mut self.sequence, buf, ctx)
                .map_err(field("sequence")),
            2 => encoding::message::merge(
                wire_type,
                self.trace.get_or_insert_with(TraceContext::default),
                buf,
                ctx,
            )
            .map_err(field("trace")),
            3..=5 => assignment_update::Update::merge(&mut self.update, tag, wire_type, buf, ctx)
                .map_err(field("update")),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let sequence =
            if self.sequence != 0 { encoding::uint64::encoded_len(1, &self.sequence) } else { 0 };
        let trace = self.trace.as_ref().map_or(0, |trace| encoding::message::encoded_len(2, trace));
        let update = match (&self.encoded, &self.update) {
            (Some(encoded), _) => encoded.encoded_len(),
            (None, Some(update)) => update.encoded_len(),
            (None, None) => 0,
        };
        sequence + trace + update
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::{assignment_update::Update, *};
    use crate::pb;

    fn route(prefix: &str) -> pb::Route {
        pb::Route {
            key: Some(pb::RouteKey { peer: "r".into(), prefix: prefix.into() }),
            local_pref: Some(100),
            services: vec![pb::ServiceKey { namespace: "ns".into(), name: "web".into() }],
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_update_survives_encoding_and_decoding() {
        let trace = TraceContext { traceparent: "00-1-2-01".into(), tracestate: String::new() };
        let updates = [
            Update::Snapshot(pb::NodeAssignments {
                routes: vec![route("192.0.2.1/32")],
                ..Default::default()
            }),
            Update::Delta(pb::AssignmentDelta {
                routes_upserted: vec![route("192.0.2.2/32")],
                peers_removed: vec!["gone".into()],
                ..Default::default()
            }),
            Update::Heartbeat(pb::Heartbeat { stream_age_ms: 7, fence_after_ms: 1000 }),
        ];
        for update in updates {
            let message = AssignmentUpdate {
                sequence: 3,
                trace: Some(trace.clone()),
                update: Some(update),
                encoded: None,
            };
            let bytes = message.encode_to_vec();
            assert_eq!(bytes.len(), message.encoded_len());
            assert_eq!(AssignmentUpdate::decode(bytes.as_slice()).unwrap(), message);
        }
    }

    #[test]
    fn a_delta_encoded_from_parts_decodes_as_the_whole_delta() {
        // The parts a sender joins: the delta without its routes, then each route encoded
        // once, as the repeated field's entries.
        let head =
            pb::AssignmentDelta { l2_withdrawn: vec!["192.0.2.9".into()], ..Default::default() };
        let routes = [route("192.0.2.1/32"), route("192.0.2.2/32")];
        let mut body = head.encode_to_vec();
        for route in &routes {
            encoding::message::encode(3, route, &mut body);
        }
        let message = AssignmentUpdate {
            sequence: 1,
            encoded: Some(EncodedUpdate::delta(body.into())),
            ..Default::default()
        };
        let bytes = message.encode_to_vec();
        assert_eq!(bytes.len(), message.encoded_len());
        let decoded = AssignmentUpdate::decode(bytes.as_slice()).unwrap();
        let whole = pb::AssignmentDelta { routes_upserted: routes.to_vec(), ..head };
        assert_eq!(decoded.update, Some(Update::Delta(whole)));
        assert_eq!(decoded.encoded, None, "decoding never sets it");
    }

    #[test]
    fn a_field_this_side_does_not_know_is_skipped() {
        let mut bytes = AssignmentUpdate { sequence: 2, ..Default::default() }.encode_to_vec();
        encoding::string::encode(99, &"from a newer sender".to_string(), &mut bytes);
        assert_eq!(AssignmentUpdate::decode(bytes.as_slice()).unwrap().sequence, 2);
    }
}
