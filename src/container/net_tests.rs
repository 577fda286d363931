//! Pure tests: byte-exact requests and the parsing of crafted (and broken) kernel replies.
//! The kernel itself is exercised by tests/net.rs.
use super::*;

/// nlmsghdr of a request, as the kernel reads it (native byte order).
fn hdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut v = len.to_ne_bytes().to_vec();
    v.extend(ty.to_ne_bytes());
    v.extend(flags.to_ne_bytes());
    v.extend(seq.to_ne_bytes());
    v.extend([0; 4]);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn veth_request_is_byte_exact() {
    let mut m = newlink_veth("veth42", 5, "eth0", 7, Some([2, 0, 0, 0, 0, 1]));
    #[rustfmt::skip]
    let body: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,   // ifinfomsg: index 0, IFF_UP/IFF_UP
        11, 0, 3, 0, b'v', b'e', b't', b'h', b'4', b'2', 0, 0, // IFLA_IFNAME "veth42\0" + pad
        8, 0, 10, 0, 5, 0, 0, 0,                            // IFLA_MASTER 5
        68, 0, 18, 0,                                       // IFLA_LINKINFO
          8, 0, 1, 0, b'v', b'e', b't', b'h',               //   IFLA_INFO_KIND "veth"
          56, 0, 2, 0,                                      //   IFLA_INFO_DATA
            52, 0, 1, 0,                                    //     VETH_INFO_PEER
              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg
              9, 0, 3, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0, // IFLA_IFNAME "eth0\0" + pad
              8, 0, 28, 0, 7, 0, 0, 0,                      //       IFLA_NET_NS_FD 7
              10, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 0,          //       IFLA_ADDRESS + pad
    ];
    #[cfg(target_endian = "little")]
    assert_eq!(m.finish(1), cat(&[&hdr(120, 16, 0x605, 1), body]));
    assert_eq!(m.finish(9).len(), 120);
    assert_eq!(&m.finish(9)[8..12], &9u32.to_ne_bytes());
}

#[test]
fn bridge_request_is_byte_exact() {
    #[rustfmt::skip]
    let body: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
        11, 0, 3, 0, b'l', b'x', b'c', b'b', b'r', b'0', 0, 0,
        20, 0, 18, 0,                                            // IFLA_LINKINFO
          10, 0, 1, 0, b'b', b'r', b'i', b'd', b'g', b'e', 0, 0, //   IFLA_INFO_KIND + pad
          4, 0, 2, 0,                                            //   IFLA_INFO_DATA, empty
    ];
    #[cfg(target_endian = "little")]
    assert_eq!(
        newlink_bridge("lxcbr0").finish(3),
        cat(&[&hdr(64, 16, 0x405, 3), body])
    );
    // CREATE without EXCL: an existing bridge is fine
    let mut m = newlink_bridge("lxcbr0");
    let flags = ne_u16(m.finish(3), 6).unwrap();
    assert_eq!(
        flags & (NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK),
        NLM_F_CREATE | NLM_F_ACK
    );
}

#[test]
fn address_request_is_byte_exact() {
    #[rustfmt::skip]
    let body: &[u8] = &[
        2, 24, 0, 0, 3, 0, 0, 0,          // ifaddrmsg AF_INET /24, index 3
        8, 0, 2, 0, 10, 0, 3, 2,          // IFA_LOCAL
        8, 0, 1, 0, 10, 0, 3, 2,          // IFA_ADDRESS
        8, 0, 4, 0, 10, 0, 3, 255,        // IFA_BROADCAST
    ];
    let mut m = newaddr(3, Ipv4Addr::new(10, 0, 3, 2), 24);
    #[cfg(target_endian = "little")]
    assert_eq!(m.finish(4), cat(&[&hdr(48, 20, 0x505, 4), body]));
    // no broadcast on /31 and /32
    assert_eq!(
        newaddr(3, Ipv4Addr::new(10, 0, 3, 2), 32).finish(4).len(),
        40
    );
    let mut m = newaddr(3, Ipv4Addr::new(192, 168, 1, 9), 16);
    assert_eq!(&m.finish(1)[40..48], &[8, 0, 4, 0, 192, 168, 255, 255][..]);
}

#[test]
fn route_requests_are_byte_exact() {
    #[rustfmt::skip]
    let default: &[u8] = &[
        2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0, // rtmsg: main table, boot, universe, unicast
        8, 0, 5, 0, 10, 0, 3, 1,              // RTA_GATEWAY
        8, 0, 4, 0, 3, 0, 0, 0,               // RTA_OIF 3
    ];
    let gw = Ipv4Addr::new(10, 0, 3, 1);
    let mut m = newroute(Ipv4Addr::UNSPECIFIED, 0, Some(gw), 3, RT_SCOPE_UNIVERSE);
    #[cfg(target_endian = "little")]
    assert_eq!(m.finish(5), cat(&[&hdr(44, 24, 0x605, 5), default]));
    #[rustfmt::skip]
    let link: &[u8] = &[
        2, 32, 0, 0, 254, 3, 253, 1, 0, 0, 0, 0, // scope link
        8, 0, 1, 0, 10, 0, 3, 1,                 // RTA_DST
        8, 0, 4, 0, 3, 0, 0, 0,
    ];
    let mut m = newroute(gw, 32, None, 3, RT_SCOPE_LINK);
    #[cfg(target_endian = "little")]
    assert_eq!(m.finish(6), cat(&[&hdr(44, 24, 0x605, 6), link]));
}

#[test]
fn link_requests_are_byte_exact() {
    #[rustfmt::skip]
    let lo_up: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
        7, 0, 3, 0, b'l', b'o', 0, 0,
    ];
    #[cfg(target_endian = "little")]
    assert_eq!(
        setlink(0, Some("lo"), true, None).finish(1),
        cat(&[&hdr(40, 16, 0x5, 1), lo_up])
    );
    #[rustfmt::skip]
    let move_back: &[u8] = &[
        0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // index 4, flags untouched
        9, 0, 3, 0, b'e', b't', b'h', b'1', 0, 0, 0, 0,
        8, 0, 28, 0, 9, 0, 0, 0,                         // IFLA_NET_NS_FD 9
    ];
    #[cfg(target_endian = "little")]
    assert_eq!(
        setlink(4, Some("eth1"), false, Some(9)).finish(2),
        cat(&[&hdr(52, 16, 0x5, 2), move_back])
    );
    #[cfg(target_endian = "little")]
    assert_eq!(
        dellink(7, None).finish(3),
        cat(&[&hdr(32, 17, 0x5, 3), &ifinfomsg(7, 0, 0)])
    );
}

// ---- replies --------------------------------------------------------------------------------

fn reply(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = hdr(16 + payload.len() as u32, ty, 0, seq);
    v.extend(payload);
    v.resize(align4(v.len()), 0);
    v
}

fn err_payload(code: i32) -> Vec<u8> {
    let mut v = code.to_ne_bytes().to_vec();
    v.extend(hdr(32, RTM_NEWLINK, 0x5, 1)); // the request's header, echoed
    v
}

fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut v = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
    v.extend(ty.to_ne_bytes());
    v.extend(data);
    v.resize(align4(v.len()), 0);
    v
}

fn link_payload(index: u32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = ifinfomsg(index, flags, 0).to_vec();
    for a in attrs {
        v.extend(a);
    }
    v
}

type Walked = (Result<bool, i32>, Vec<(u16, Vec<u8>)>);

fn walk_all(d: &[u8], seq: u32) -> Walked {
    let mut seen = Vec::new();
    let r = walk(d, seq, &mut |t, p| {
        seen.push((t, p.to_vec()));
        true
    });
    (r, seen)
}

#[test]
fn acks_and_errors() {
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 7, &err_payload(0)), 7).0,
        Ok(true)
    );
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 7, &err_payload(-17)), 7).0,
        Err(17)
    );
    // positive, i32::MIN, or without the echoed header: malformed
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 7, &err_payload(3)), 7).0,
        Err(libc::EPROTO)
    );
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 7, &err_payload(i32::MIN)), 7).0,
        Err(libc::EPROTO)
    );
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 7, &0i32.to_ne_bytes()), 7).0,
        Err(libc::EPROTO)
    );
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 7, &[]), 7).0,
        Err(libc::EPROTO)
    );
    // a reply to an earlier request is skipped, the datagram is not the answer
    assert_eq!(
        walk_all(&reply(NLMSG_ERROR, 6, &err_payload(-1)), 7).0,
        Ok(false)
    );
    // noop, then ack
    let d = cat(&[
        &reply(NLMSG_NOOP, 7, &[]),
        &reply(NLMSG_ERROR, 7, &err_payload(0)),
    ]);
    assert_eq!(walk_all(&d, 7).0, Ok(true));
    // overrun and other control types are not data
    assert_eq!(walk_all(&reply(4, 7, &[]), 7).0, Err(libc::EPROTO));
    assert_eq!(walk_all(&[], 7).0, Ok(false));
}

#[test]
fn multipart_dump() {
    let l1 = link_payload(1, 1, &[attr(IFLA_IFNAME, b"lo\0")]);
    let l2 = link_payload(2, 0, &[attr(IFLA_IFNAME, b"eth0\0")]);
    let first = cat(&[&reply(RTM_NEWLINK, 3, &l1), &reply(RTM_NEWLINK, 3, &l2)]);
    let (r, seen) = walk_all(&first, 3);
    assert_eq!(r, Ok(false), "no DONE yet: read on");
    assert_eq!(seen.len(), 2);
    let done = reply(NLMSG_DONE, 3, &0i32.to_ne_bytes());
    assert_eq!(walk_all(&done, 3).0, Ok(true));
    assert_eq!(
        walk_all(&reply(NLMSG_DONE, 3, &(-16i32).to_ne_bytes()), 3).0,
        Err(16)
    );
    assert_eq!(walk_all(&reply(NLMSG_DONE, 3, &[]), 3).0, Ok(true));
    let links: Vec<Link> = seen.iter().filter_map(|(_, p)| parse_link(p)).collect();
    assert_eq!(
        links[1],
        Link {
            index: 2,
            name: "eth0".into(),
            up: false,
            master: None,
            hwaddr: None
        }
    );
    // a malformed data message stops the walk
    assert_eq!(walk(&first, 3, &mut |_, _| false), Err(libc::EPROTO));
}

#[test]
fn broken_headers_are_errors_not_panics() {
    let ack = reply(NLMSG_ERROR, 1, &err_payload(0));
    // length below the header, beyond the datagram, truncated header
    let mut short = ack.clone();
    short[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(walk_all(&short, 1).0, Err(libc::EPROTO));
    let mut long = ack.clone();
    long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    assert_eq!(walk_all(&long, 1).0, Err(libc::EPROTO));
    let mut huge = ack.clone();
    huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(walk_all(&huge, 1).0, Err(libc::EPROTO));
    for n in 1..NLMSG_HDRLEN {
        assert_eq!(walk_all(&ack[..n], 1).0, Err(libc::EPROTO), "{n} bytes");
    }
}

#[test]
fn link_parsing() {
    let p = link_payload(
        9,
        IFF_UP,
        &[
            attr(IFLA_IFNAME, b"veth42\0"),
            attr(IFLA_MASTER, &5u32.to_ne_bytes()),
            attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]),
            attr(IFLA_LINKINFO | 0x8000, &attr(IFLA_INFO_KIND, b"veth")), // NLA_F_NESTED
        ],
    );
    let l = parse_link(&p).unwrap();
    assert_eq!(
        l,
        Link {
            index: 9,
            name: "veth42".into(),
            up: true,
            master: Some(5),
            hwaddr: Some([2, 0, 0, 0, 0, 1])
        }
    );
    // no name, short IFLA_MASTER, attribute running past the end, attribute length < 4
    assert_eq!(parse_link(&link_payload(1, 0, &[])), None);
    assert_eq!(
        parse_link(&link_payload(
            1,
            0,
            &[attr(IFLA_IFNAME, b"a\0"), attr(IFLA_MASTER, &[1])]
        )),
        None
    );
    let mut past = link_payload(1, 0, &[attr(IFLA_IFNAME, b"a\0")]);
    past[16..18].copy_from_slice(&40u16.to_ne_bytes());
    assert_eq!(parse_link(&past), None);
    let mut tiny = link_payload(1, 0, &[attr(IFLA_IFNAME, b"a\0")]);
    tiny[16..18].copy_from_slice(&2u16.to_ne_bytes());
    assert_eq!(parse_link(&tiny), None);
    assert_eq!(parse_link(&p[..10]), None);
    // a name without its NUL, or with garbage after it, and a non-MAC address
    let l = parse_link(&link_payload(
        1,
        0,
        &[attr(IFLA_IFNAME, b"lo"), attr(IFLA_ADDRESS, &[1, 2])],
    ))
    .unwrap();
    assert_eq!((l.name.as_str(), l.hwaddr), ("lo", None));
    assert_eq!(
        parse_link(&link_payload(1, 0, &[attr(IFLA_IFNAME, b"ab\0zz")]))
            .unwrap()
            .name,
        "ab"
    );
}

fn addr_payload(family: u8, prefix: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![family, prefix, 0, 0];
    v.extend(index.to_ne_bytes());
    for a in attrs {
        v.extend(a);
    }
    v
}

#[test]
fn address_parsing() {
    let a = Ipv4Addr::new(10, 0, 3, 2);
    let p = addr_payload(
        2,
        24,
        3,
        &[
            attr(IFA_ADDRESS, &[10, 0, 3, 9]),
            attr(IFA_LOCAL, &a.octets()),
        ],
    );
    assert_eq!(parse_addr(&p), Some(Some((3, a, 24))), "IFA_LOCAL wins");
    let p = addr_payload(2, 24, 3, &[attr(IFA_ADDRESS, &a.octets())]);
    assert_eq!(parse_addr(&p), Some(Some((3, a, 24))));
    assert_eq!(
        parse_addr(&addr_payload(10, 64, 3, &[attr(IFA_ADDRESS, &[0; 16])])),
        Some(None),
        "IPv6 skipped"
    );
    assert_eq!(
        parse_addr(&addr_payload(2, 24, 3, &[attr(IFA_LOCAL, &[10, 0, 3])])),
        None
    );
    assert_eq!(
        parse_addr(&addr_payload(2, 24, 3, &[])),
        None,
        "no address at all"
    );
    assert_eq!(parse_addr(&[2, 24, 0]), None);
}

#[test]
fn route_parsing() {
    let mut p = vec![2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0];
    p.extend(attr(RTA_GATEWAY, &[10, 0, 3, 1]));
    p.extend(attr(RTA_OIF, &2u32.to_ne_bytes()));
    let r = parse_route(&p).unwrap().unwrap();
    assert_eq!(
        r,
        Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(Ipv4Addr::new(10, 0, 3, 1)),
            oif: Some(2)
        }
    );
    // RTA_TABLE overrides the 8-bit rtm_table: the local table is not listed
    let mut local = p.clone();
    local.extend(attr(RTA_TABLE, &255u32.to_ne_bytes()));
    assert_eq!(parse_route(&local), Some(None));
    let mut bad = p.clone();
    bad.extend(attr(RTA_DST, &[10, 0]));
    assert_eq!(parse_route(&bad), None);
    assert_eq!(parse_route(&p[..5]), None);
}

/// Every truncation and a few thousand mutations of valid replies: errors, never panics.
#[test]
fn garbage_never_panics() {
    let l = link_payload(
        2,
        1,
        &[
            attr(IFLA_IFNAME, b"eth0\0"),
            attr(IFLA_MASTER, &[1, 0, 0, 0]),
        ],
    );
    let a = addr_payload(2, 24, 2, &[attr(IFA_LOCAL, &[10, 0, 3, 2])]);
    let seeds = [
        cat(&[&reply(RTM_NEWLINK, 1, &l), &reply(NLMSG_DONE, 1, &[0; 4])]),
        cat(&[
            &reply(RTM_NEWADDR, 1, &a),
            &reply(NLMSG_ERROR, 1, &err_payload(0)),
        ]),
        reply(NLMSG_ERROR, 1, &err_payload(-19)),
    ];
    let parse = fuzz_reply;
    let mut x: u32 = 0x9e37_79b9;
    for seed in &seeds {
        for n in 0..=seed.len() {
            parse(&seed[..n]);
        }
        for _ in 0..3000 {
            let mut d = seed.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % d.len();
                d[i] = (x >> 8) as u8;
            }
            parse(&d);
        }
    }
}

#[test]
fn names_subnets_and_errors() {
    assert!(check_name("eth0").is_ok());
    assert!(check_name("abcdefghijklmno").is_ok());
    for bad in ["", "abcdefghijklmnop", "a/b", "a b", "a\0b"] {
        assert_eq!(check_name(bad).unwrap_err().errno, libc::EINVAL, "{bad:?}");
    }
    let (a, b) = (Ipv4Addr::new(10, 0, 3, 2), Ipv4Addr::new(10, 0, 3, 1));
    assert!(
        same_subnet(a, b, 24)
            && !same_subnet(a, b, 32)
            && same_subnet(a, Ipv4Addr::new(1, 2, 3, 4), 0)
    );
    assert!(!same_subnet(a, Ipv4Addr::new(10, 0, 4, 1), 24));
    let e = fail(
        "create veth",
        "veth42 (peer eth0 of web, pid 42)",
        libc::EEXIST,
    );
    assert_eq!(
        e.to_string(),
        "netlink create veth veth42 (peer eth0 of web, pid 42): File exists (os error 17)"
    );
}
