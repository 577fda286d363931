use super::*;

/// The v1 controller's verdict on one access (its match_exception / _partial): the reference
/// the program is held against.
fn allows(p: &Policy, dev_type: u32, major: u32, minor: u32, access: u32) -> bool {
    let matching = |e: &&Exception| {
        e.dev_type == dev_type
            && e.major.is_none_or(|m| m == major)
            && e.minor.is_none_or(|m| m == minor)
    };
    if p.default_allow {
        // denied when any exception covers any of the access
        !p.exceptions
            .iter()
            .filter(matching)
            .any(|e| e.access & access != 0)
    } else {
        // allowed only when one exception covers all of it
        p.exceptions
            .iter()
            .filter(matching)
            .any(|e| access & !e.access == 0)
    }
}

/// The eBPF subset `program` emits, run over a `bpf_cgroup_dev_ctx` as the kernel would.
fn run(prog: &[Insn], dev_type: u32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [dev_type | access << 16, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog[pc];
        pc += 1;
        let (d, s) = (i.dst as usize, i.src as usize);
        let jump = |pc: &mut usize, c: bool| {
            if c {
                *pc = (*pc as i64 + i64::from(i.off)) as usize
            }
        };
        match i.code {
            LDX_MEM_W => {
                assert_eq!(s, 1, "loads from the context only");
                r[d] = u64::from(ctx[(i.off / 4) as usize]);
            }
            ALU32_AND_K => r[d] = u64::from(r[d] as u32 & i.imm as u32),
            ALU32_RSH_K => r[d] = u64::from((r[d] as u32) >> i.imm),
            ALU32_MOV_X => r[d] = u64::from(r[s] as u32),
            ALU64_MOV_K => r[d] = i.imm as i64 as u64,
            JEQ_K => jump(&mut pc, r[d] == i.imm as i64 as u64),
            JNE_K => jump(&mut pc, r[d] != i.imm as i64 as u64),
            JNE_X => jump(&mut pc, r[d] != r[s]),
            EXIT => return r[0],
            c => panic!("opcode {c:#x}"),
        }
    }
    panic!("no exit")
}

fn rules(list: &[(bool, &str)]) -> Vec<(bool, DeviceRule)> {
    list.iter()
        .map(|(a, r)| (*a, DeviceRule::parse(r).unwrap()))
        .collect()
}

/// The program agrees with the v1 reading on every type, access and a spread of numbers.
fn agrees(p: &Policy) {
    let prog = program(p);
    for t in [DEV_BLOCK, DEV_CHAR] {
        for access in 1..=ACC_ALL {
            for major in [0, 1, 5, 7, 8, 136, 4095] {
                for minor in [0, 1, 3, 5, 9, 255] {
                    let want = allows(p, t, major, minor, access);
                    let got = run(&prog, t, access, major, minor);
                    assert_eq!(
                        got,
                        u64::from(want),
                        "type {t} access {access} {major}:{minor} in {p:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn allow_all_needs_no_program() {
    assert!(policy(&rules(&[(true, "a")])).allows_all());
    assert!(policy(&[]).allows_all());
    // an allow against the all-allowed default changes nothing (v1)
    assert!(policy(&rules(&[(true, "c 1:3 rwm")])).allows_all());
    assert!(!policy(&rules(&[(false, "a")])).allows_all());
}

#[test]
fn deny_one_device_on_the_allow_all_default() {
    let p = policy(&rules(&[(true, "a"), (false, "c 1:3 rwm")]));
    assert!(!allows(&p, DEV_CHAR, 1, 3, ACC_READ));
    assert!(allows(&p, DEV_CHAR, 1, 5, ACC_READ | ACC_WRITE));
    assert!(allows(&p, DEV_BLOCK, 1, 3, ACC_READ));
    agrees(&p);
    // partial: only writes denied; a read-write open is a write
    let p = policy(&rules(&[(false, "c 1:3 w")]));
    assert!(allows(&p, DEV_CHAR, 1, 3, ACC_READ));
    assert!(!allows(&p, DEV_CHAR, 1, 3, ACC_READ | ACC_WRITE));
    agrees(&p);
}

#[test]
fn allow_list_after_deny_all() {
    let p = policy(&rules(&[
        (false, "a"),
        (true, "c 1:5 rwm"),
        (true, "c 136:* rw"),
        (true, "b *:* m"),
        (true, "c 1:9 r"),
        (true, "c 1:9 w"),
    ]));
    assert!(!p.default_allow);
    assert!(allows(&p, DEV_CHAR, 1, 5, ACC_ALL));
    assert!(!allows(&p, DEV_CHAR, 1, 3, ACC_READ));
    assert!(allows(&p, DEV_CHAR, 136, 7, ACC_READ | ACC_WRITE));
    assert!(!allows(&p, DEV_CHAR, 136, 7, ACC_MKNOD));
    assert!(allows(&p, DEV_BLOCK, 8, 1, ACC_MKNOD));
    assert!(!allows(&p, DEV_BLOCK, 8, 1, ACC_READ));
    // two writes for one device merge their access
    assert!(allows(&p, DEV_CHAR, 1, 9, ACC_READ | ACC_WRITE));
    assert_eq!(p.exceptions.len(), 4);
    agrees(&p);
}

#[test]
fn later_rules_take_access_back_and_a_resets() {
    let p = policy(&rules(&[
        (false, "a"),
        (true, "c 1:3 rwm"),
        (false, "c 1:3 w"),
        (true, "c 1:5 rwm"),
        (false, "c 1:5 rwm"),
    ]));
    assert_eq!(
        p.exceptions,
        vec![Exception {
            dev_type: DEV_CHAR,
            major: Some(1),
            minor: Some(3),
            access: ACC_READ | ACC_MKNOD
        }]
    );
    agrees(&p);
    // a deny of a wildcard does not touch a specific exception (exact matches only)
    let p = policy(&rules(&[
        (false, "a"),
        (true, "c 1:3 rwm"),
        (false, "c *:* rwm"),
    ]));
    assert!(allows(&p, DEV_CHAR, 1, 3, ACC_READ));
    agrees(&p);
    let p = policy(&rules(&[(false, "a"), (true, "c 1:3 rwm"), (true, "a")]));
    assert!(p.allows_all());
    let p = policy(&rules(&[(true, "a"), (false, "b 8:* rwm"), (false, "a")]));
    assert!(!p.default_allow && p.exceptions.is_empty());
    assert!(!allows(&p, DEV_CHAR, 1, 3, ACC_READ));
    agrees(&p);
}

#[test]
fn instructions_encode_as_struct_bpf_insn() {
    let i = Insn {
        code: LDX_MEM_W,
        dst: 4,
        src: 1,
        off: 4,
        imm: -2,
    };
    let b = i.encode();
    assert_eq!(b[0], 0x61);
    if cfg!(target_endian = "little") {
        assert_eq!(b[1], 0x14);
        assert_eq!(&b[2..], &[4, 0, 0xfe, 0xff, 0xff, 0xff]);
    }
    let p = policy(&rules(&[(false, "a")]));
    let prog = program(&p);
    assert_eq!(encode(&prog).len(), prog.len() * 8);
    assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 0);
}
