use super::*;

/// The classic BPF subset `compile` emits, run over a `seccomp_data`: the kernel's reading.
fn run(prog: &[libc::sock_filter], arch: Arch, nr: u32, args: [u64; 6]) -> u32 {
    let audit = arch.audit();
    let word = |off: u32| -> u32 {
        match off {
            NR => nr,
            ARCH => audit,
            o if (16..64).contains(&o) => {
                let i = ((o - 16) / 8) as usize;
                let v = args[i];
                let first = (o - 16) % 8 == 0;
                // the word at the lower address is the low one on little endian
                if first != arch.big_endian() {
                    v as u32
                } else {
                    (v >> 32) as u32
                }
            }
            o => panic!("load from {o}"),
        }
    };
    let mut a = 0u32;
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let ins = prog[pc];
        let cond = |c: bool| if c { ins.jt } else { ins.jf } as usize;
        pc += 1;
        match ins.code {
            LD_W_ABS => a = word(ins.k),
            ALU_AND_K => a &= ins.k,
            JA => pc += ins.k as usize,
            JEQ_K => pc += cond(a == ins.k),
            JGT_K => pc += cond(a > ins.k),
            JGE_K => pc += cond(a >= ins.k),
            RET_K => return ins.k,
            c => panic!("opcode {c:#x}"),
        }
    }
    panic!("no verdict")
}

fn compiled(text: &str, arches: &[Arch]) -> Vec<libc::sock_filter> {
    let (p, w) = parse(text, arches[0]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(w.is_empty(), "{w:?}");
    compile(&p, arches).unwrap()
}

fn nr(arch: Arch, name: &str) -> u32 {
    arch.number(name).unwrap()
}

const X86: [Arch; 2] = [Arch::X86_64, Arch::I386];

#[test]
fn tables_know_the_numbers_of_each_abi() {
    assert_eq!(Arch::X86_64.number("mkdir"), Some(83));
    assert_eq!(Arch::I386.number("mkdir"), Some(39));
    assert_eq!(Arch::Aarch64.number("mkdirat"), Some(34));
    assert_eq!(Arch::Aarch64.number("mkdir"), None);
    assert_eq!(Arch::Arm.number("mkdir"), Some(39));
    assert_eq!(Arch::Mips.number("mkdir"), Some(4039));
    assert_eq!(Arch::X86_64.number("umount2"), Some(166));
    assert_eq!(Arch::X86_64.number("nope"), None);
    // the name list is sorted and without duplicates: a table index is a name
    let names: Vec<&str> = syscalls::NAMES.lines().collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(names.len(), syscalls::X86_64.len());
}

#[test]
fn denylist_errno_on_native_and_compat_arch() {
    let p = compiled("2\ndenylist\nmkdir errno 13\nrmdir\n", &X86);
    let errno13 = RET_ERRNO | 13;
    assert_eq!(
        run(&p, Arch::X86_64, nr(Arch::X86_64, "mkdir"), [0; 6]),
        errno13
    );
    assert_eq!(
        run(&p, Arch::I386, nr(Arch::I386, "mkdir"), [0; 6]),
        errno13
    );
    // the rule default of a denylist is kill
    assert_eq!(
        run(&p, Arch::X86_64, nr(Arch::X86_64, "rmdir"), [0; 6]),
        RET_KILL_THREAD
    );
    // i386's mkdir (39) is x86_64's getpid: allowed there
    assert_eq!(run(&p, Arch::X86_64, 39, [0; 6]), RET_ALLOW);
    assert_eq!(run(&p, Arch::X86_64, 0, [0; 6]), RET_ALLOW);
    // a foreign arch and x32 calls are killed
    assert_eq!(
        run(&p, Arch::Aarch64, nr(Arch::Aarch64, "read"), [0; 6]),
        RET_KILL_THREAD
    );
    assert_eq!(
        run(&p, Arch::X86_64, X32_SYSCALL_BIT | 1, [0; 6]),
        RET_KILL_THREAD
    );
}

#[test]
fn allowlist_with_default_action_and_old_words() {
    for head in ["allowlist errno 1", "whitelist errno 1"] {
        let text = format!("2\n{head}\nread\nwrite allow # a comment\n\n# only these\nexit kill\n");
        let p = compiled(&text, &[Arch::Aarch64, Arch::Arm]);
        let a = Arch::Aarch64;
        assert_eq!(run(&p, a, nr(a, "read"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, a, nr(a, "write"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, a, nr(a, "exit"), [0; 6]), RET_KILL_THREAD);
        assert_eq!(run(&p, a, nr(a, "mkdirat"), [0; 6]), RET_ERRNO | 1);
        assert_eq!(
            run(&p, Arch::Arm, nr(Arch::Arm, "write"), [0; 6]),
            RET_ALLOW
        );
        assert_eq!(
            run(&p, Arch::Arm, nr(Arch::Arm, "mkdir"), [0; 6]),
            RET_ERRNO | 1
        );
    }
    let (p, _) = parse("2\nallowlist\nread\n", Arch::Arm).unwrap();
    assert_eq!(p.default, Action::Kill);
    let (p, _) = parse("2\nblacklist\nread\n", Arch::Arm).unwrap();
    assert_eq!(p.default, Action::Allow);
    assert_eq!(p.rules[0].action, Action::Kill);
    let (p, _) = parse("2\ndenylist trap\nread errno 5\n", Arch::Arm).unwrap();
    assert_eq!(p.default, Action::Trap);
    assert_eq!(p.rules[0].action, Action::Errno(5));
}

#[test]
fn version_1_allows_numbers_of_the_native_arch() {
    let p = compiled("1\nallowlist\n0\n1\n", &X86);
    assert_eq!(run(&p, Arch::X86_64, 1, [0; 6]), RET_ALLOW);
    assert_eq!(run(&p, Arch::X86_64, 2, [0; 6]), RET_KILL_THREAD);
    // numbers mean nothing on the compat arch
    assert_eq!(run(&p, Arch::I386, 1, [0; 6]), RET_KILL_THREAD);
    assert!(parse("1\ndenylist\n0\n", Arch::X86_64).is_err());
    assert_eq!(
        parse("1\nallowlist\nread\n", Arch::X86_64)
            .unwrap_err()
            .line,
        3
    );
}

#[test]
fn arch_sections_fit_the_machine_and_apply_to_both_abis() {
    let text =
        "2\ndenylist\n[arm64]\nmkdirat errno 1\n[x86_64]\nmkdir errno 2\n[X86]\nrmdir errno 3\n\
                [all]\nlink errno 4\n[ppc64]\nunlink\n[mips]\nchdir errno 9\n";
    let p = compiled(text, &X86);
    let x = Arch::X86_64;
    assert_eq!(run(&p, x, nr(x, "mkdirat"), [0; 6]), RET_ALLOW);
    assert_eq!(run(&p, x, nr(x, "mkdir"), [0; 6]), RET_ERRNO | 2);
    // LXC adds each rule read to every arch of the filter
    assert_eq!(
        run(&p, Arch::I386, nr(Arch::I386, "mkdir"), [0; 6]),
        RET_ERRNO | 2
    );
    assert_eq!(run(&p, x, nr(x, "rmdir"), [0; 6]), RET_ERRNO | 3);
    assert_eq!(run(&p, x, nr(x, "link"), [0; 6]), RET_ERRNO | 4);
    assert_eq!(run(&p, x, nr(x, "unlink"), [0; 6]), RET_ALLOW);
    assert_eq!(run(&p, x, nr(x, "chdir"), [0; 6]), RET_ALLOW);
    let a = Arch::Aarch64;
    let p = compiled(text, &[a, Arch::Arm]);
    assert_eq!(run(&p, a, nr(a, "mkdirat"), [0; 6]), RET_ERRNO | 1);
    assert_eq!(
        run(&p, Arch::Arm, nr(Arch::Arm, "mkdirat"), [0; 6]),
        RET_ERRNO | 1
    );
    assert_eq!(
        run(&p, Arch::Arm, nr(Arch::Arm, "mkdir"), [0; 6]),
        RET_ALLOW
    );
    let m = Arch::Mips;
    let p = compiled(text, &[m]);
    assert_eq!(run(&p, m, nr(m, "chdir"), [0; 6]), RET_ERRNO | 9);
    assert_eq!(
        run(&p, Arch::Mipsel, nr(m, "chdir"), [0; 6]),
        RET_KILL_THREAD
    );
    let e = parse("2\ndenylist\n[sparc]\nread\n", Arch::X86_64).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("[sparc]"), "{}", e.message);
}

#[test]
fn argument_checks_compare_64_bit_values() {
    let text = "2\nallowlist errno 1\n\
                ioctl allow [1,0x5401,==]\n\
                write allow [0,2,<=] [2,0x100000000,>]\n\
                read allow [2,4096,!=]\n\
                openat allow [2,0x40,&=,0xc0]\n\
                close allow [0,3,>=]\n\
                dup allow [0,0x100000001,<]\n";
    for arches in [&X86[..], &[Arch::Mips][..]] {
        let a = arches[0];
        let p = compiled(text, arches);
        let call = |name: &str, args: [u64; 6]| run(&p, a, nr(a, name), args);
        let deny = RET_ERRNO | 1;
        assert_eq!(call("ioctl", [1, 0x5401, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("ioctl", [1, 0x5402, 0, 0, 0, 0]), deny);
        assert_eq!(call("ioctl", [1, 0x1_0000_5401, 0, 0, 0, 0]), deny);
        assert_eq!(call("write", [2, 0, 0x1_0000_0001, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("write", [3, 0, 0x1_0000_0001, 0, 0, 0]), deny);
        assert_eq!(call("write", [1, 0, 0x1_0000_0000, 0, 0, 0]), deny);
        assert_eq!(call("write", [1, 0, 0x2_0000_0000, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("write", [1 << 32, 0, 0x2_0000_0000, 0, 0, 0]), deny);
        assert_eq!(call("read", [0, 0, 4096, 0, 0, 0]), deny);
        assert_eq!(call("read", [0, 0, 4097, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("read", [0, 0, 4096 | 1 << 40, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("openat", [0, 0, 0x41, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("openat", [0, 0, 0xc1, 0, 0, 0]), deny);
        assert_eq!(call("close", [3, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("close", [2, 0, 0, 0, 0, 0]), deny);
        assert_eq!(call("close", [1 << 32, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("dup", [0x1_0000_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call("dup", [0x1_0000_0001, 0, 0, 0, 0, 0]), deny);
        assert_eq!(call("dup", [5, 0, 0, 0, 0, 0]), RET_ALLOW);
    }
}

#[test]
fn reject_force_umount_and_checked_rules_before_plain_ones() {
    let text = "2\ndenylist\nreject_force_umount  # as LXC's common.seccomp\numount2 allow\n\
                mkdir errno 1\nmkdir errno 2 [1,0700,==]\n";
    let p = compiled(text, &X86);
    let x = Arch::X86_64;
    let umount = nr(x, "umount2");
    assert_eq!(
        run(&p, x, umount, [0, 1, 0, 0, 0, 0]),
        RET_ERRNO | libc::EACCES as u32
    );
    assert_eq!(run(&p, x, umount, [0, 2, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(
        run(&p, x, nr(x, "mkdir"), [0, 0o700, 0, 0, 0, 0]),
        RET_ERRNO | 2
    );
    assert_eq!(
        run(&p, x, nr(x, "mkdir"), [0, 0o755, 0, 0, 0, 0]),
        RET_ERRNO | 1
    );
}

#[test]
fn bad_profiles_name_the_line() {
    let cases: [(&str, usize, &str); 11] = [
        ("", 1, "version"),
        ("3\nallowlist\n", 1, "version"),
        ("2\n", 2, "allowlist or denylist"),
        ("2\ngreylist\n", 2, "allowlist or denylist"),
        ("2\nallowlist debug\n", 2, "debug"),
        ("2\nallowlist\nread notify\n", 3, "supervisor"),
        ("2\nallowlist\nread errno\n", 3, "errno"),
        ("2\nallowlist\nread deny\n", 3, "unknown action"),
        ("2\nallowlist\nread allow [6,1,==]\n", 3, "index"),
        ("2\nallowlist\nread allow [0,1,=~]\n", 3, "operator"),
        ("2\nallowlist\nread allow [0,1,==] junk\n", 3, "junk"),
    ];
    for (text, line, want) in cases {
        let e = parse(text, Arch::X86_64).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e:?}");
        assert!(e.message.contains(want), "{text:?}: {e:?}");
    }
    let (p, _) = parse("2\ndenylist\nread errno 1\nread errno 2\n", Arch::X86_64).unwrap();
    let e = compile(&p, &X86).unwrap_err();
    assert!(e.contains("line 4") && e.contains("line 3"), "{e}");
}

#[test]
fn unknown_syscalls_are_skipped_with_a_warning() {
    let (p, w) = parse("2\ndenylist\nfrobnicate errno 1\nmkdir\n", Arch::X86_64).unwrap();
    assert_eq!(p.rules.len(), 1);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("line 3") && w[0].contains("frobnicate"),
        "{w:?}"
    );
    // a name of another arch only: no rule on this one, no error
    let p = compiled("2\ndenylist\nmkdir errno 1\n", &[Arch::Aarch64]);
    assert_eq!(
        p.len(),
        6,
        "ld arch, jeq, ja, kill, then ld nr + default only"
    );
}

#[test]
fn long_profiles_jump_far_and_stay_under_the_kernel_limit() {
    let names: Vec<&str> = syscalls::NAMES.lines().collect();
    let mut text = String::from("2\nallowlist\n");
    for n in &names {
        text.push_str(n);
        text.push_str(" errno 7\n");
    }
    let p = compiled(&text, &X86);
    assert!(p.len() > 512 && p.len() < MAX_INSNS, "{}", p.len());
    for a in X86 {
        assert_eq!(run(&p, a, nr(a, "write"), [0; 6]), RET_ERRNO | 7);
        assert_eq!(run(&p, a, 9999, [0; 6]), RET_KILL_THREAD);
    }
}
