//! Announcements are declarative: a session is handed the full set of routes it should
//! advertise, diffs it against what it advertised, and sends only the difference, packed into
//! as few UPDATEs as the message size allows (never one per prefix when attributes are equal).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use ipnetwork::IpNetwork;

use super::packet::{
    HEADER_LEN,
    attribute::{Attribute, Origin, Segment},
    iana::{afi, safi},
    prefix,
    update::Update,
};

/// What differs between routes: the attributes the allocator decides.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttributes {
    /// LOCAL_PREF (sent to iBGP peers only).
    pub local_pref: Option<u32>,
    /// Standard communities.
    pub communities: Vec<u32>,
    /// Large communities.
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// A standard community written "A:B" (each 0-65535), as a 32-bit value.
pub fn parse_community(text: &str) -> Result<u32, String> {
    let (high, low) = text.split_once(':').ok_or(format!("{text:?} is not A:B"))?;
    let part = |p: &str| p.parse::<u16>().map_err(|_| format!("{text:?}: {p:?} is not 0-65535"));
    Ok((u32::from(part(high)?) << 16) | u32::from(part(low)?))
}

/// A large community written "A:B:C" (each 32 bits).
pub fn parse_large_community(text: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<u32> = text
        .split(':')
        .map(|p| p.parse().map_err(|_| format!("{text:?} is not A:B:C")))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [a, b, c] => Ok((*a, *b, *c)),
        _ => Err(format!("{text:?} is not A:B:C")),
    }
}

/// What the session adds to every route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathContext {
    /// Our AS.
    pub local_asn: u32,
    /// iBGP: empty AS_PATH and LOCAL_PREF; eBGP: our AS in AS_PATH, no LOCAL_PREF.
    pub internal: bool,
    /// The peer speaks 2-octet AS only: AS4_PATH carries an AS above 65535.
    pub two_octet_peer: bool,
    /// Next hop for IPv4 routes.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes (a global address).
    pub next_hop_v6: Option<IpAddr>,
    /// Largest message.
    pub max_len: usize,
}

/// Routes a session should advertise. Attributes are shared: thousands of routes carry the
/// same few attribute sets, and every session keeps a copy of what it advertised.
pub type Routes = BTreeMap<IpNetwork, Arc<RouteAttributes>>;

/// What to send to move the peer from `advertised` to `desired`.
pub fn diff(advertised: &Routes, desired: &Routes) -> (Routes, Vec<IpNetwork>) {
    let announce = desired
        .iter()
        .filter(|(prefix, attributes)| advertised.get(*prefix) != Some(*attributes))
        .map(|(prefix, attributes)| (*prefix, attributes.clone()))
        .collect();
    let withdraw =
        advertised.keys().filter(|prefix| !desired.contains_key(*prefix)).copied().collect();
    (announce, withdraw)
}

/// UPDATEs that announce `announce` and withdraw `withdraw`, packed. Routes of a family with
/// no next hop are left out (the caller reports them as pending).
pub fn updates(announce: &Routes, withdraw: &[IpNetwork], context: &PathContext) -> Vec<Update> {
    let mut out = Vec::new();
    let (v4_withdraw, v6_withdraw): (Vec<_>, Vec<_>) = withdraw.iter().partition(|p| p.is_ipv4());
    for chunk in pack(&v4_withdraw, context.max_len - HEADER_LEN - 4) {
        out.push(Update { withdrawn: chunk, ..Update::default() });
    }
    // MP_UNREACH_NLRI: 4 header bytes with extended length, AFI and SAFI.
    for chunk in pack(&v6_withdraw, context.max_len - HEADER_LEN - 4 - 4 - 3) {
        out.push(Update {
            attributes: vec![Attribute::MpUnreach {
                afi: afi::IPV6,
                safi: safi::UNICAST,
                withdrawn: chunk,
            }],
            ..Update::default()
        });
    }

    let mut groups: BTreeMap<(&RouteAttributes, bool), Vec<IpNetwork>> = BTreeMap::new();
    for (prefix, attributes) in announce {
        groups.entry((attributes.as_ref(), prefix.is_ipv6())).or_default().push(*prefix);
    }
    for ((attributes, ipv6), prefixes) in groups {
        let mut base = path_attributes(attributes, context);
        if ipv6 {
            let Some(next_hop) = context.next_hop_v6 else { continue };
            let reach = Attribute::MpReach {
                afi: afi::IPV6,
                safi: safi::UNICAST,
                next_hops: vec![next_hop],
                nlri: Vec::new(),
            };
            let room = context.max_len
                - HEADER_LEN
                - 4
                - encoded_len(&base)
                - encoded_len(std::slice::from_ref(&reach))
                - 2;
            for chunk in pack(&prefixes, room) {
                let mut attributes = base.clone();
                attributes.push(Attribute::MpReach {
                    afi: afi::IPV6,
                    safi: safi::UNICAST,
                    next_hops: vec![next_hop],
                    nlri: chunk,
                });
                out.push(Update { attributes, ..Update::default() });
            }
        } else {
            let Some(next_hop) = context.next_hop_v4 else { continue };
            base.insert(2, Attribute::NextHop(next_hop));
            let room = context.max_len - HEADER_LEN - 4 - encoded_len(&base);
            for chunk in pack(&prefixes, room) {
                out.push(Update { attributes: base.clone(), nlri: chunk, ..Update::default() });
            }
        }
    }
    out
}

/// ORIGIN, AS_PATH (and AS4_PATH), LOCAL_PREF, communities, in type-code order.
fn path_attributes(attributes: &RouteAttributes, context: &PathContext) -> Vec<Attribute> {
    let path = if context.internal {
        Vec::new()
    } else {
        vec![Segment::Sequence(vec![context.local_asn])]
    };
    let mut out = vec![Attribute::Origin(Origin::Igp), Attribute::AsPath(path.clone())];
    if context.internal
        && let Some(local_pref) = attributes.local_pref
    {
        out.push(Attribute::LocalPref(local_pref));
    }
    if !attributes.communities.is_empty() {
        out.push(Attribute::Communities(attributes.communities.clone()));
    }
    if context.two_octet_peer && context.local_asn > u32::from(u16::MAX) && !path.is_empty() {
        out.push(Attribute::As4Path(path));
    }
    if !attributes.large_communities.is_empty() {
        out.push(Attribute::LargeCommunities(attributes.large_communities.clone()));
    }
    out
}

fn encoded_len(attributes: &[Attribute]) -> usize {
    let mut buffer = bytes::BytesMut::new();
    attributes.iter().for_each(|a| a.encode(super::packet::attribute::AsWidth::Four, &mut buffer));
    buffer.len()
}

/// Splits `prefixes` into runs whose encoding fits in `room` bytes.
fn pack(prefixes: &[IpNetwork], room: usize) -> Vec<Vec<IpNetwork>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut used = 0;
    for prefix in prefixes {
        let length = prefix::encoded_len(prefix);
        if used + length > room && !chunk.is_empty() {
            chunks.push(std::mem::take(&mut chunk));
            used = 0;
        }
        chunk.push(*prefix);
        used += length;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Distinct families among `routes`, for End-of-RIB markers.
pub fn families(routes: &Routes) -> BTreeSet<bool> {
    routes.keys().map(IpNetwork::is_ipv6).collect()
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::bgp::packet::{MAX_LEN, Message, WireContext};

    fn context(internal: bool) -> PathContext {
        PathContext {
            local_asn: 64512,
            internal,
            two_octet_peer: false,
            next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 10)),
            next_hop_v6: Some("2001:db8::10".parse().unwrap()),
            max_len: MAX_LEN,
        }
    }

    fn routes(count: u32, attributes: &RouteAttributes) -> Routes {
        let attributes = Arc::new(attributes.clone());
        (0..count)
            .map(|n| {
                (
                    IpNetwork::new(Ipv4Addr::from(0xc612_0000 + n).into(), 32).unwrap(),
                    attributes.clone(),
                )
            })
            .collect()
    }

    fn wire_len(update: &Update) -> usize {
        let mut out = BytesMut::new();
        Message::Update(update.clone()).encode(WireContext::default(), &mut out);
        out.len()
    }

    #[test]
    fn equal_attributes_share_updates_packed_up_to_the_message_size() {
        let attributes = RouteAttributes {
            local_pref: Some(100),
            communities: vec![1],
            large_communities: vec![],
        };
        let updates = updates(&routes(10_000, &attributes), &[], &context(true));
        let nlri: usize = updates.iter().map(|u| u.nlri.len()).sum();
        assert_eq!(nlri, 10_000);
        assert!(updates.iter().all(|u| wire_len(u) <= MAX_LEN), "every UPDATE fits");
        let per_update = 10_000 / updates.len();
        assert!(per_update >= 500, "{per_update} NLRI per UPDATE");
        assert!(updates[0].attributes.contains(&Attribute::LocalPref(100)));
    }

    #[test]
    fn extended_messages_carry_more_per_update() {
        let context = PathContext { max_len: 65535, ..context(false) };
        let updates = updates(&routes(20_000, &RouteAttributes::default()), &[], &context);
        assert!(updates.len() <= 2, "{}", updates.len());
        assert!(updates.iter().all(|u| wire_len(u) <= 65535));
    }

    #[test]
    fn ebgp_gets_our_as_and_no_local_pref_ibgp_the_reverse() {
        let attributes = RouteAttributes { local_pref: Some(100), ..Default::default() };
        let ebgp = updates(&routes(1, &attributes), &[], &context(false));
        assert!(
            ebgp[0].attributes.contains(&Attribute::AsPath(vec![Segment::Sequence(vec![64512])]))
        );
        assert!(!ebgp[0].attributes.iter().any(|a| matches!(a, Attribute::LocalPref(_))));
        let ibgp = updates(&routes(1, &attributes), &[], &context(true));
        assert!(ibgp[0].attributes.contains(&Attribute::AsPath(vec![])));
    }

    #[test]
    fn ipv6_goes_in_mp_reach_with_a_global_next_hop_and_withdrawals_are_packed() {
        let prefix: IpNetwork = "2001:db8::7/128".parse().unwrap();
        let announce = Routes::from([(prefix, Arc::new(RouteAttributes::default()))]);
        let update = &updates(&announce, &[], &context(false))[0];
        assert!(update.attributes.iter().any(|a| matches!(a, Attribute::MpReach { next_hops, nlri, .. }
            if next_hops == &vec!["2001:db8::10".parse::<IpAddr>().unwrap()] && nlri == &vec![prefix])));
        let withdraw: Vec<IpNetwork> =
            routes(2000, &RouteAttributes::default()).keys().copied().chain([prefix]).collect();
        let updates = updates(&Routes::new(), &withdraw, &context(false));
        assert_eq!(
            updates.len(),
            4,
            "2000 IPv4 withdrawals of 5 bytes in three UPDATEs, and one MP_UNREACH"
        );
        assert!(updates.iter().all(|u| wire_len(u) <= MAX_LEN));
    }

    #[test]
    fn diff_sends_only_what_changed() {
        let a = RouteAttributes::default();
        let b = RouteAttributes { local_pref: Some(200), ..Default::default() };
        let advertised = routes(3, &a);
        let mut desired = routes(2, &a);
        let changed = *desired.keys().next().unwrap();
        desired.insert(changed, Arc::new(b.clone()));
        let (announce, withdraw) = diff(&advertised, &desired);
        assert_eq!(announce, Routes::from([(changed, Arc::new(b))]));
        assert_eq!(withdraw.len(), 1);
    }

    #[test]
    fn a_four_octet_as_towards_a_two_octet_peer_adds_as4_path() {
        let context =
            PathContext { local_asn: 4_200_000_000, two_octet_peer: true, ..context(false) };
        let update = &updates(&routes(1, &RouteAttributes::default()), &[], &context)[0];
        assert!(update.attributes.iter().any(|a| matches!(a, Attribute::As4Path(_))));
    }
}
