//! The default seccomp profile, shaped after docker's: system calls that let a
//! container reach beyond itself return EPERM unless the container holds the
//! capability docker gates them on; `clone3` returns ENOSYS (so libcs fall back to
//! `clone`, whose namespace flags can be checked); `--privileged` and
//! `--security-opt seccomp=unconfined` turn it off.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Syscalls denied whatever the capabilities (docker's profile has no entry for them).
const ALWAYS_DENIED: &[libc::c_long] = &[
    libc::SYS_add_key,
    libc::SYS_keyctl,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
    libc::SYS_nfsservctl,
    libc::SYS_kexec_file_load,
    libc::SYS_lookup_dcookie,
    libc::SYS__sysctl,
];

/// Syscalls allowed only with the named capability.
fn gated() -> Vec<(&'static str, Vec<libc::c_long>)> {
    vec![
        (
            "SYS_ADMIN",
            vec![
                libc::SYS_mount,
                libc::SYS_umount2,
                libc::SYS_unshare,
                libc::SYS_setns,
                libc::SYS_pivot_root,
                libc::SYS_swapon,
                libc::SYS_swapoff,
                libc::SYS_quotactl,
                libc::SYS_bpf,
                libc::SYS_fanotify_init,
                libc::SYS_name_to_handle_at,
                libc::SYS_perf_event_open,
                libc::SYS_fsopen,
                libc::SYS_fsmount,
                libc::SYS_fsconfig,
                libc::SYS_move_mount,
                libc::SYS_open_tree,
                libc::SYS_fspick,
            ],
        ),
        (
            "SYS_MODULE",
            vec![
                libc::SYS_init_module,
                libc::SYS_finit_module,
                libc::SYS_delete_module,
            ],
        ),
        ("SYS_BOOT", vec![libc::SYS_reboot, libc::SYS_kexec_load]),
        (
            "SYS_TIME",
            vec![
                libc::SYS_settimeofday,
                libc::SYS_clock_settime,
                libc::SYS_clock_adjtime,
            ],
        ),
        (
            "SYS_PTRACE",
            vec![
                libc::SYS_process_vm_readv,
                libc::SYS_process_vm_writev,
                libc::SYS_kcmp,
            ],
        ),
        ("SYS_RAWIO", vec![libc::SYS_iopl, libc::SYS_ioperm]),
        ("SYS_PACCT", vec![libc::SYS_acct]),
        ("SYSLOG", vec![libc::SYS_syslog]),
        ("DAC_READ_SEARCH", vec![libc::SYS_open_by_handle_at]),
        (
            "SYS_NICE",
            vec![
                libc::SYS_mbind,
                libc::SYS_set_mempolicy,
                libc::SYS_move_pages,
            ],
        ),
    ]
}

const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        TargetArch::x86_64
    }
}

/// Compile the default profile for a process holding `capabilities` (names without
/// `CAP_`, or `ALL`). Returns the filters to install, in order.
pub fn default_profile(capabilities: &[String]) -> Result<Vec<BpfProgram>, String> {
    let has = |c: &str| capabilities.iter().any(|x| x == c || x == "ALL");
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for s in ALWAYS_DENIED {
        deny.insert(*s, vec![]);
    }
    for (cap, calls) in gated() {
        if !has(cap) {
            for s in calls {
                deny.insert(s, vec![]);
            }
        }
    }
    if !has("SYS_ADMIN") {
        // clone(2) with any namespace flag: one rule per flag (any match denies).
        let rules = NAMESPACE_FLAGS
            .iter()
            .map(|f| {
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*f), *f)
                    .and_then(|c| SeccompRule::new(vec![c]))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        deny.insert(libc::SYS_clone, rules);
    }
    let main = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch(),
    )
    .map_err(|e| e.to_string())?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, vec![]);
    let c3 = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .map_err(|e| e.to_string())?;
    let a: BpfProgram = main
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let b: BpfProgram = c3
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    Ok(vec![a, b])
}

/// Install compiled filters on the calling thread.
///
/// Installed with the seccomp system call directly, while the caller still holds
/// CAP_SYS_ADMIN: seccompiler's `apply_filter` would also set no_new_privs, which
/// docker leaves off unless asked (`--security-opt no-new-privileges`), so setuid
/// binaries keep working.
pub(crate) fn install(filters: &[BpfProgram]) -> Result<(), String> {
    for f in filters {
        let len = u16::try_from(f.len())
            .map_err(|_| format!("seccomp filter too long ({} instructions)", f.len()))?;
        let prog = libc::sock_fprog {
            len,
            // seccompiler's sock_filter has the kernel's layout (code, jt, jf, k).
            filter: f.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the program points into `f`, alive for the call; the kernel copies it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(format!(
                "installing seccomp filter: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_compiles_for_default_and_admin() {
        let caps: Vec<String> = crate::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(super::default_profile(&caps).unwrap().len(), 2);
        assert_eq!(super::default_profile(&["ALL".into()]).unwrap().len(), 2);
    }
}
