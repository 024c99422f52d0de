//! The isolation a child applies to itself between `fork()` and running untrusted code.
//!
//! Per zygote (once, where the host allows; `Prepared::layers` records what it got):
//! - namespaces: mounts, SysV IPC and POSIX queues, network and hostname of its own;
//! - a minimal filesystem: a read-only tmpfs root holding read-only binds of the interpreter's
//!   prefix, `/usr`, `/lib*`, four devices and the work directory, so nothing else on the host
//!   can even be named (`stat` of `/etc/shadow` finds nothing);
//! - a fresh, size-capped tmpfs as the work directory before every child.
//!
//! Per child, applied to itself between `fork()` and reading its job:
//! - rlimits (soft = hard): address space, CPU seconds, file size, open files, no core dumps,
//!   no real-time priority;
//! - an unprivileged user and group of the zygote's own, with no capabilities, so nothing of the
//!   host's user (its processes, its files) is within reach;
//! - Landlock (when the kernel has it): reads only beneath the interpreter's directories,
//!   writes only beneath the work directory, no TCP, no signals outside the sandbox;
//! - seccomp: no process or thread creation, no `exec`, no sockets, no signals or resource
//!   limits for other processes, no SysV IPC, priorities, scheduling classes, extended
//!   attributes or `ioctl` beyond a short list, none of the kernel's administrative interfaces.
//!   Without Landlock it also refuses every write-mode `open` and file-changing call;
//! - a new session (so a process-group kill cannot reach the zygote), a parent-death signal,
//!   `/dev/null` as stdin, and only the descriptors the protocol needs.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::protocol::ZygoteConfig;

/// Exit status of a child whose sandbox could not be set up (it ran no untrusted code).
pub const SANDBOX_FAILED_EXIT: i32 = 121;
/// First byte on the result pipe: written after the sandbox is in place and before any untrusted
/// code runs, so a program cannot fake a sandbox failure (or hide a real one).
pub const SANDBOX_READY: u8 = 0xA5;

// Landlock ABI (include/uapi/linux/landlock.h).
const LL_CREATE_RULESET_VERSION: u32 = 1;
const LL_RULE_PATH_BENEATH: u32 = 1;
const LL_FS_EXECUTE: u64 = 1 << 0;
const LL_FS_READ_FILE: u64 = 1 << 2;
const LL_FS_READ_DIR: u64 = 1 << 3;
const LL_FS_REFER: u64 = 1 << 13;
const LL_FS_TRUNCATE: u64 = 1 << 14;
const LL_FS_IOCTL_DEV: u64 = 1 << 15;
const LL_NET_BIND_TCP: u64 = 1 << 0;
const LL_NET_CONNECT_TCP: u64 = 1 << 1;
const LL_SCOPE_ABSTRACT_UNIX: u64 = 1 << 0;
const LL_SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version this kernel offers, or 0 when it has none.
pub fn landlock_abi() -> u32 {
    // SAFETY: the documented version query takes no pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LL_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        0
    } else {
        r as u32
    }
}

/// Whether the kernel supports seccomp filters (the query itself changes nothing).
pub fn seccomp_available() -> bool {
    // SAFETY: PR_GET_SECCOMP has no side effects.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP) >= 0 }
}

fn fs_rights(abi: u32) -> u64 {
    let mut all = (1u64 << 13) - 1; // ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2 {
        all |= LL_FS_REFER;
    }
    if abi >= 3 {
        all |= LL_FS_TRUNCATE;
    }
    if abi >= 5 {
        all |= LL_FS_IOCTL_DEV;
    }
    all
}

/// One isolation layer as the zygote found it: on, or off and why (the host forbids it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub active: bool,
    /// For an active layer a short description; for a missing one the reason.
    pub detail: String,
}

fn layer(v: &mut Vec<Layer>, name: &str, r: io::Result<String>) -> bool {
    let (active, detail) = match r {
        Ok(d) => (true, d),
        Err(e) => (false, e.to_string()),
    };
    v.push(Layer {
        name: name.to_string(),
        active,
        detail,
    });
    active
}

/// Per-zygote preparation, done once so each fork only has to apply it.
pub struct Prepared {
    pub landlock_abi: u32,
    pub seccomp: bool,
    /// Size of the private tmpfs mounted on the work directory; 0 when it is a plain directory.
    pub workdir_bytes: u64,
    ruleset: Option<OwnedFd>,
    /// The work directory as children see it.
    pub workdir: PathBuf,
    workdir_c: CString,
    devnull: OwnedFd,
    /// The unprivileged user and group children switch to; None where the host forbids it.
    pub sandbox_ids: Option<(u32, u32)>,
    /// A new tmpfs is mounted on the work directory before every child (else it is emptied).
    pub fresh_workdir: bool,
    pub layers: Vec<Layer>,
    /// The work directory's state right after its tmpfs was mounted.
    pristine: std::cell::Cell<Option<DirState>>,
}

/// Everything a run could have changed about its (empty, fresh) work directory: any change to
/// the directory (entries, mode, owner, times, flags) moves its ctime, and filesystems with
/// fine-grained change times (tmpfs since Linux 6.13) move it even within one clock tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirState {
    ctime: (i64, u32),
    mtime: (i64, u32),
    atime: (i64, u32),
    mode: u16,
    nlink: u32,
    uid: u32,
    gid: u32,
    ino: u64,
    blocks_free: u64,
    files_free: u64,
}

fn dir_state(dir: &CStr) -> io::Result<DirState> {
    // SAFETY: zeroed statx/statfs are valid out-parameters; dir is a valid C string.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe {
        if libc::statx(
            libc::AT_FDCWD,
            dir.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut sx,
        ) != 0
            || libc::statfs(dir.as_ptr(), &mut sf) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let t = |t: libc::statx_timestamp| (t.tv_sec, t.tv_nsec);
    Ok(DirState {
        ctime: t(sx.stx_ctime),
        mtime: t(sx.stx_mtime),
        atime: t(sx.stx_atime),
        mode: sx.stx_mode,
        nlink: sx.stx_nlink,
        uid: sx.stx_uid,
        gid: sx.stx_gid,
        ino: sx.stx_ino,
        blocks_free: sf.f_bfree,
        files_free: sf.f_ffree,
    })
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn open_path(p: &Path) -> io::Result<OwnedFd> {
    let c = cstr(p)?;
    // SAFETY: valid C string; the fd is owned from here.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn build_ruleset(abi: u32, read_paths: &[PathBuf], writable: &Path) -> io::Result<OwnedFd> {
    let fs = fs_rights(abi);
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 {
            LL_NET_BIND_TCP | LL_NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL
        } else {
            0
        },
    };
    let size = match abi {
        1..=3 => 8,
        4..=5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    // SAFETY: attr outlives the call; size never exceeds the struct.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr, size, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned from here.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let read = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR;
    let mut rules: Vec<(PathBuf, u64)> = read_paths.iter().map(|p| (p.clone(), read)).collect();
    rules.push((writable.to_path_buf(), fs));
    for (path, access) in rules {
        let Ok(dir) = open_path(&path) else { continue }; // absent paths need no rule
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let access = if is_dir {
            access
        } else {
            access & (LL_FS_EXECUTE | LL_FS_READ_FILE)
        };
        let rule = PathBeneathAttr {
            allowed_access: access,
            parent_fd: dir.as_raw_fd(),
        };
        // SAFETY: rule outlives the call; both descriptors are valid.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LL_RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ruleset)
}

/// Directories every interpreter needs to read besides its own prefixes.
pub const SYSTEM_READ_PATHS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32"];
/// Device nodes children may open (read-only mounts: their timestamps cannot be changed).
const DEVICES: &[&str] = &["null", "zero", "random", "urandom"];
/// Where children work when they see the minimal filesystem: `/tmp` holds nothing but the
/// mount point, so the Landlock rule on `/tmp` covers exactly the work directory's tmpfs.
pub const SANDBOX_WORKDIR: &str = "/tmp/work";
/// First of the user ids children run as (one per zygote: base + zygote pid), far above any
/// account a distribution creates.
pub const SANDBOX_UID_BASE: u32 = 1_600_000_000;

/// Bytes the programs of one run may keep in their directory, when it is a private tmpfs.
pub const WORKDIR_BYTES: u64 = 64 << 20;

impl Prepared {
    /// `read_paths`: where the interpreter and its standard library live (its prefixes).
    /// `staging`: an empty host directory, this zygote's own.
    pub fn new(read_paths: &[PathBuf], staging: &Path) -> io::Result<Prepared> {
        let mut layers = Vec::new();
        let mut paths: Vec<PathBuf> = SYSTEM_READ_PATHS.iter().map(PathBuf::from).collect();
        paths.extend(read_paths.iter().cloned());
        paths.retain(|p| p.exists());
        paths.sort();
        paths.dedup();
        // A path below another one is already covered by it.
        let roots: Vec<PathBuf> = paths
            .iter()
            .filter(|p| !paths.iter().any(|q| q != *p && p.starts_with(q)))
            .cloned()
            .collect();
        // SAFETY: getpid/geteuid have no preconditions.
        let (pid, euid) = unsafe { (libc::getpid() as u32, libc::geteuid()) };
        let ids = if euid == 0 {
            let id = SANDBOX_UID_BASE + pid;
            Ok((id, id))
        } else {
            Err(io::Error::other(
                "the executor does not run as root, so children keep its user id",
            ))
        };
        let ids_ok = ids.as_ref().ok().copied();
        let mount_ns = layer(&mut layers, "mount_namespace", private_mounts());
        for (flag, name, what) in [
            (
                libc::CLONE_NEWIPC,
                "ipc_namespace",
                "no SysV IPC or POSIX queues shared with the host",
            ),
            (
                libc::CLONE_NEWNET,
                "network_namespace",
                "no interfaces but a down loopback",
            ),
            (libc::CLONE_NEWUTS, "uts_namespace", "hostname 'sandbox'"),
        ] {
            // SAFETY: unshare affects only this single-threaded zygote.
            let r = if unsafe { libc::unshare(flag) } == 0 {
                Ok(what.to_string())
            } else {
                Err(io::Error::last_os_error())
            };
            layer(&mut layers, name, r);
        }
        // SAFETY: sets this (new) UTS namespace's name; fails harmlessly without one.
        unsafe { libc::sethostname(c"sandbox".as_ptr(), 7) };
        let minimal = if mount_ns {
            minimal_root(staging, &roots)
                .map(|()| "only the interpreter, /usr, /lib and a few devices, read-only".into())
        } else {
            Err(io::Error::other("needs a mount namespace"))
        };
        let minimal = layer(&mut layers, "minimal_filesystem", minimal);
        let (workdir, anchor, fresh_workdir, workdir_bytes) = if minimal {
            let w = PathBuf::from(SANDBOX_WORKDIR);
            let anchor = PathBuf::from("/tmp");
            (w, anchor, true, WORKDIR_BYTES)
        } else {
            let bytes = if mount_ns && private_tmpfs(staging, ids_ok).is_ok() {
                WORKDIR_BYTES
            } else {
                0
            };
            (staging.to_path_buf(), staging.to_path_buf(), false, bytes)
        };
        layer(
            &mut layers,
            "fresh_workdir",
            if fresh_workdir {
                Ok(format!(
                    "a new {}-MiB tmpfs for every run",
                    WORKDIR_BYTES >> 20
                ))
            } else {
                Err(io::Error::other(
                    "needs the minimal filesystem; the directory is emptied after every run",
                ))
            },
        );
        let uid_layer = ids.map(|(u, g)| format!("uid {u}, gid {g}, no capabilities"));
        layer(&mut layers, "unprivileged_uid", uid_layer);
        if ids_ok.is_some() {
            // The zygote never executes anything, so capabilities it could gain through exec are
            // of no use to it; dropping the bounding set keeps them from children too.
            for cap in 0..64 {
                // SAFETY: plain prctl; unknown capabilities answer EINVAL.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            }
        }
        let abi = landlock_abi();
        let ruleset = if abi > 0 {
            Some(high_fd(build_ruleset(abi, &roots, &anchor)?)?)
        } else {
            None
        };
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let devnull = high_fd(devnull.into())?;
        let prep = Prepared {
            workdir_bytes,
            landlock_abi: if ruleset.is_some() { abi } else { 0 },
            seccomp: seccomp_available(),
            ruleset,
            workdir_c: cstr(&workdir)?,
            workdir,
            devnull,
            sandbox_ids: ids_ok,
            fresh_workdir,
            layers,
            pristine: std::cell::Cell::new(None),
        };
        if prep.fresh_workdir {
            prep.mount_workdir()?;
        }
        Ok(prep)
    }

    /// Gives the next run a new, empty tmpfs (fresh_workdir mode), so nothing a run did to its
    /// directory (files, mode, times, flags, inode numbers) is seen by the next run. A directory
    /// the run left exactly as mounted is kept: it is indistinguishable from a new one, and
    /// most programs never touch it (a mount and its teardown cost about a tenth of a run).
    pub fn renew_workdir(&self) -> io::Result<()> {
        if !self.fresh_workdir {
            clean_dir(&self.workdir);
            return Ok(());
        }
        let now = dir_state(&self.workdir_c).ok();
        if now.is_some() && now == self.pristine.get() {
            return Ok(());
        }
        // SAFETY: the previous child has exited; nothing else uses the mount.
        if unsafe { libc::umount2(self.workdir_c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.mount_workdir()
    }

    fn mount_workdir(&self) -> io::Result<()> {
        mount_tmpfs(&self.workdir_c, WORKDIR_BYTES, self.sandbox_ids)?;
        self.pristine.set(Some(dir_state(&self.workdir_c)?));
        Ok(())
    }
}

fn mount_tmpfs(dir: &CString, bytes: u64, ids: Option<(u32, u32)>) -> io::Result<()> {
    let owner = ids
        .map(|(u, g)| format!(",uid={u},gid={g}"))
        .unwrap_or_default();
    let opts =
        CString::new(format!("size={bytes},nr_inodes=16384,mode=0700{owner}")).expect("no NUL");
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
    // SAFETY: valid C strings; affects only this zygote's private mount namespace.
    let r = unsafe {
        libc::mount(
            c"azr".as_ptr(),
            dir.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            opts.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties a directory (the fallback when no fresh tmpfs can be mounted per run).
pub fn clean_dir(dir: &Path) {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return;
    };
    if entries.next().is_none() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        let _ = r;
    }
}

/// A mount namespace of the zygote's own, with nothing propagating back to the host.
fn private_mounts() -> io::Result<String> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: plain syscalls with valid arguments, on this single-threaded zygote.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(null, c"/".as_ptr(), null, flags, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok("mounts private to the zygote and its children".into())
}

fn sys_mount(
    src: Option<&CString>,
    dst: &CString,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CString>,
) -> io::Result<()> {
    let p = |c: Option<&CString>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: valid C strings or null pointers, as mount(2) accepts.
    let r = unsafe {
        libc::mount(
            p(src),
            dst.as_ptr(),
            fstype.map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            p(data).cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind_read_only(src: &Path, dst: &Path, extra: libc::c_ulong) -> io::Result<()> {
    let (s, d) = (cstr(src)?, cstr(dst)?);
    sys_mount(Some(&s), &d, None, libc::MS_BIND | libc::MS_REC, None)?;
    let ro = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | extra;
    sys_mount(None, &d, None, ro, None)
}

fn mkdir_all(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
}

/// Makes a tmpfs on `staging` the zygote's root, holding read-only binds of `roots`, four
/// devices and an empty `/tmp/work`, so children cannot even name (or `stat`) anything else on
/// the host.
fn minimal_root(staging: &Path, roots: &[PathBuf]) -> io::Result<()> {
    let st = cstr(staging)?;
    let opts = CString::new("size=1m,nr_inodes=4096,mode=0755").expect("no NUL");
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys_mount(
        Some(&CString::from(c"azr-root")),
        &st,
        Some(c"tmpfs"),
        flags,
        Some(&opts),
    )?;
    let inside = |p: &Path| staging.join(p.strip_prefix("/").unwrap_or(p));
    for r in roots {
        let dst = inside(r);
        mkdir_all(&dst)?;
        bind_read_only(r, &dst, libc::MS_NODEV)?;
    }
    mkdir_all(&staging.join("dev"))?;
    for d in DEVICES {
        let src = Path::new("/dev").join(d);
        if !src.exists() {
            continue;
        }
        let dst = staging.join("dev").join(d);
        std::fs::File::create(&dst)?;
        bind_read_only(&src, &dst, libc::MS_NOEXEC)?;
    }
    mkdir_all(&staging.join("tmp/work"))?;
    let dot = c".";
    // SAFETY: plain syscalls on valid C strings, in the zygote's private mount namespace.
    unsafe {
        if libc::chdir(st.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
        // new root. Where the host's root cannot be pivoted (an initramfs), chroot instead:
        // children can neither chroot nor mount, so they cannot climb out of it.
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) == 0 {
            if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(io::Error::last_os_error());
            }
        } else if libc::chroot(dot.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let ro = libc::MS_REMOUNT
        | libc::MS_BIND
        | libc::MS_RDONLY
        | libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC;
    sys_mount(None, &CString::from(c"/"), None, ro, None)
}

/// Fallback without the minimal filesystem: a size-capped tmpfs on the (host) work directory,
/// so a program writing files until its timeout fills at most that, never the host's disk.
fn private_tmpfs(workdir: &Path, ids: Option<(u32, u32)>) -> io::Result<()> {
    mount_tmpfs(&cstr(workdir)?, WORKDIR_BYTES, ids)
}

/// Moves a descriptor above the range a child rewires (0..=3), so `dup2` onto those targets can
/// never overwrite it.
fn high_fd(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: duplicating a valid descriptor; the copy is owned from here.
    let hi = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if hi < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(hi) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_rlimit(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: plain struct argument.
    check(unsafe { libc::setrlimit(res, &lim) })
}

/// Applies every layer to the calling process. Called in the child right after `fork()`; on
/// error the caller must `_exit` without running anything.
///
/// # Safety
/// Must only be called in a freshly forked, single-threaded child.
pub unsafe fn enter(
    prep: &Prepared,
    cfg: &ZygoteConfig,
    stdout_w: Option<RawFd>,
    result_w: RawFd,
    job_r: RawFd,
    zygote_pid: libc::pid_t,
) -> Result<(), SetupError> {
    let step = |name: &'static str| {
        move |e: io::Error| SetupError {
            step: name,
            error: e,
        }
    };
    check(libc::setsid()).map_err(step("setsid"))?;
    // Descriptors: 0 <- /dev/null, 1 <- stdout pipe (or /dev/null), 2 <- /dev/null, 3 <- result,
    // 4 <- the job (read once, then closed). Sources move above the targets first, so no dup2
    // can overwrite a source that is still needed.
    let null = prep.devnull.as_raw_fd();
    let fds = || -> io::Result<()> {
        let high = |fd: RawFd| -> io::Result<RawFd> {
            let h = libc::fcntl(fd, libc::F_DUPFD, 100);
            check(h).map(|_| h)
        };
        let out = high(stdout_w.unwrap_or(null))?;
        let res = high(result_w)?;
        let job = high(job_r)?;
        check(libc::dup2(null, 0))?;
        check(libc::dup2(out, 1))?;
        check(libc::dup2(null, 2))?;
        check(libc::dup2(res, 3))?;
        check(libc::dup2(job, 4))?;
        Ok(())
    };
    fds().map_err(step("descriptors"))?;
    check(libc::chdir(prep.workdir_c.as_ptr())).map_err(step("chdir"))?;

    let cpu = cfg.cpu_secs.max(1);
    // Soft and hard limits are equal (CPU: one second of slack for SIGXCPU before SIGKILL), and
    // without privileges a child can lower them but never raise them.
    let limits = || -> io::Result<()> {
        set_rlimit(libc::RLIMIT_CPU, cpu, cpu + 1)?;
        set_rlimit(libc::RLIMIT_AS, cfg.memory_bytes, cfg.memory_bytes)?;
        set_rlimit(libc::RLIMIT_FSIZE, 16 << 20, 16 << 20)?;
        set_rlimit(libc::RLIMIT_NOFILE, 64, 64)?;
        set_rlimit(libc::RLIMIT_CORE, 0, 0)?;
        set_rlimit(libc::RLIMIT_MEMLOCK, 0, 0)?;
        set_rlimit(libc::RLIMIT_MSGQUEUE, 0, 0)?;
        // No real-time scheduling and no raised priority, even if the filter were bypassed.
        set_rlimit(libc::RLIMIT_RTPRIO, 0, 0)?;
        set_rlimit(libc::RLIMIT_RTTIME, 0, 0)?;
        set_rlimit(libc::RLIMIT_NICE, 0, 0)?;
        // Ignored for privileged users; seccomp below is what stops process creation for them.
        set_rlimit(libc::RLIMIT_NPROC, 0, 0)
    };
    limits().map_err(step("rlimits"))?;
    if let Some((uid, gid)) = prep.sandbox_ids {
        // Changing every user id clears all capabilities (permitted, effective, ambient).
        check(libc::setgroups(0, std::ptr::null())).map_err(step("setgroups"))?;
        check(libc::setresgid(gid, gid, gid)).map_err(step("setresgid"))?;
        check(libc::setresuid(uid, uid, uid)).map_err(step("setresuid"))?;
        if libc::geteuid() != uid || libc::getegid() != gid {
            return Err(SetupError {
                step: "setresuid",
                error: io::Error::other("the user id did not change"),
            });
        }
    }
    // After the user change, which clears the parent-death signal.
    check(libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
    ))
    .map_err(step("parent-death signal"))?;
    if libc::getppid() != zygote_pid {
        return Err(SetupError {
            step: "fork",
            error: io::Error::other("the zygote died"),
        });
    }

    check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)).map_err(step("no_new_privs"))?;
    if let Some(rs) = &prep.ruleset {
        if libc::syscall(libc::SYS_landlock_restrict_self, rs.as_raw_fd(), 0u32) < 0 {
            return Err(SetupError {
                step: "landlock",
                error: io::Error::last_os_error(),
            });
        }
    }
    close_from(5);
    if prep.seccomp {
        let filter = child_filter(libc::getpid(), prep.landlock_abi == 0);
        install_filter(&filter).map_err(step("seccomp"))?;
    }
    // The marker goes out last: from here on, anything is the program's doing.
    let marker = [SANDBOX_READY];
    if libc::write(3, marker.as_ptr().cast(), 1) != 1 {
        return Err(SetupError {
            step: "report",
            error: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Which step of the set-up failed, reported to the host so a restricted host is diagnosable.
#[derive(Debug)]
pub struct SetupError {
    pub step: &'static str,
    pub error: io::Error,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sandbox set-up failed at {}: {}", self.step, self.error)
    }
}

unsafe fn close_from(first: u32) {
    if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) < 0 {
        for fd in first..4096 {
            libc::close(fd as RawFd);
        }
    }
}

// ---- seccomp-bpf ---------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i // little-endian: the low half of args[i]
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Process creation, refused to children only: the zygote itself must fork.
fn denied_to_children() -> Vec<(libc::c_long, i32)> {
    use libc::*;
    #[allow(unused_mut)]
    let mut v: Vec<(c_long, i32)> = vec![
        (SYS_clone, EPERM),
        // ENOSYS makes libc fall back to clone(), which is refused above.
        (SYS_clone3, ENOSYS),
        (SYS_pidfd_open, EPERM),
        // The zygote mounts a fresh work directory per run; its children mount nothing.
        (SYS_mount, EPERM),
        (SYS_umount2, EPERM),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend_from_slice(&[(SYS_fork, EPERM), (SYS_vfork, EPERM)]);
    v
}

/// Syscalls refused outright to the zygote and (by inheritance) every child.
fn denied() -> Vec<(libc::c_long, i32)> {
    use libc::*;
    let eperm = EPERM;
    let mut v: Vec<(c_long, i32)> = vec![
        (SYS_execve, eperm),
        (SYS_execveat, eperm),
        (SYS_socket, eperm),
        (SYS_socketpair, eperm),
        (SYS_ptrace, eperm),
        (SYS_process_vm_readv, eperm),
        (SYS_process_vm_writev, eperm),
        (SYS_kcmp, eperm),
        (SYS_pidfd_send_signal, eperm),
        (SYS_pidfd_getfd, eperm),
        (SYS_pivot_root, eperm),
        (SYS_chroot, eperm),
        (SYS_unshare, eperm),
        (SYS_setns, eperm),
        (SYS_reboot, eperm),
        (SYS_kexec_load, eperm),
        (SYS_kexec_file_load, eperm),
        (SYS_init_module, eperm),
        (SYS_finit_module, eperm),
        (SYS_delete_module, eperm),
        (SYS_bpf, eperm),
        (SYS_perf_event_open, eperm),
        (SYS_userfaultfd, eperm),
        (SYS_keyctl, eperm),
        (SYS_add_key, eperm),
        (SYS_request_key, eperm),
        // io_uring performs I/O outside the syscall filter's view.
        (SYS_io_uring_setup, eperm),
        (SYS_io_uring_enter, eperm),
        (SYS_io_uring_register, eperm),
        (SYS_acct, eperm),
        (SYS_swapon, eperm),
        (SYS_swapoff, eperm),
        (SYS_sethostname, eperm),
        (SYS_setdomainname, eperm),
        (SYS_settimeofday, eperm),
        (SYS_clock_settime, eperm),
        (SYS_clock_adjtime, eperm),
        (SYS_adjtimex, eperm),
        (SYS_syslog, eperm),
        (SYS_quotactl, eperm),
        (SYS_open_by_handle_at, eperm),
        (SYS_name_to_handle_at, eperm),
        (SYS_mknodat, eperm),
        (SYS_fanotify_init, eperm),
        (SYS_move_mount, eperm),
        (SYS_open_tree, eperm),
        (SYS_fsopen, eperm),
        (SYS_fsconfig, eperm),
        (SYS_fsmount, eperm),
        (SYS_fspick, eperm),
        // SysV IPC and POSIX message queues outlive the process that made them.
        (SYS_shmget, eperm),
        (SYS_shmat, eperm),
        (SYS_shmctl, eperm),
        (SYS_shmdt, eperm),
        (SYS_msgget, eperm),
        (SYS_msgsnd, eperm),
        (SYS_msgrcv, eperm),
        (SYS_msgctl, eperm),
        (SYS_semget, eperm),
        (SYS_semop, eperm),
        (SYS_semtimedop, eperm),
        (SYS_semctl, eperm),
        (SYS_mq_open, eperm),
        (SYS_mq_unlink, eperm),
        (SYS_mq_timedsend, eperm),
        (SYS_mq_timedreceive, eperm),
        (SYS_mq_notify, eperm),
        (SYS_mq_getsetattr, eperm),
        // Priorities, scheduling classes (real-time ones stall host threads) and placement.
        (SYS_setpriority, eperm),
        (SYS_sched_setscheduler, eperm),
        (SYS_sched_setparam, eperm),
        (SYS_sched_setattr, eperm),
        (SYS_sched_setaffinity, eperm),
        (SYS_ioprio_set, eperm),
        (SYS_set_mempolicy, eperm),
        (SYS_mbind, eperm),
        (SYS_migrate_pages, eperm),
        (SYS_move_pages, eperm),
        (SYS_process_madvise, eperm),
        (SYS_process_mrelease, eperm),
        (SYS_fanotify_mark, eperm),
        (SYS_inotify_init1, eperm),
    ];
    // Extended attributes: "not supported" (what a filesystem without them answers), so
    // copying code such as shutil.copy2 still works.
    let xattr: &[c_long] = &[
        SYS_setxattr,
        SYS_lsetxattr,
        SYS_fsetxattr,
        SYS_getxattr,
        SYS_lgetxattr,
        SYS_fgetxattr,
        SYS_listxattr,
        SYS_llistxattr,
        SYS_flistxattr,
        SYS_removexattr,
        SYS_lremovexattr,
        SYS_fremovexattr,
    ];
    v.extend(xattr.iter().map(|&nr| (nr, EOPNOTSUPP)));
    // The *xattrat calls (Linux 6.13), numbered alike on every architecture.
    v.extend((463..=466).map(|nr| (nr, EOPNOTSUPP)));
    #[cfg(target_arch = "x86_64")]
    v.extend_from_slice(&[
        (SYS_mknod, eperm),
        (SYS_iopl, eperm),
        (SYS_ioperm, eperm),
        (SYS_inotify_init, eperm),
    ]);
    v
}

/// `ioctl` requests anything legitimate uses: terminal queries (`isatty`, terminal size),
/// bytes available, blocking mode and close-on-exec. Everything else (file flags such as
/// "immutable", device control) is answered "not a terminal".
const IOCTL_ALLOWED: &[u32] = &[
    0x5401, // TCGETS
    0x5413, // TIOCGWINSZ
    0x541B, // FIONREAD
    0x5421, // FIONBIO
    0x5450, // FIONCLEX
    0x5451, // FIOCLEX
];

/// File-changing syscalls refused when Landlock is missing (then nothing at all is writable).
fn denied_without_landlock() -> Vec<libc::c_long> {
    use libc::*;
    #[allow(unused_mut)]
    let mut v = vec![
        SYS_unlinkat,
        SYS_renameat,
        SYS_renameat2,
        SYS_mkdirat,
        SYS_linkat,
        SYS_symlinkat,
        SYS_fchmod,
        SYS_fchmodat,
        SYS_fchown,
        SYS_fchownat,
        SYS_truncate,
        SYS_utimensat,
        SYS_setxattr,
        SYS_lsetxattr,
        SYS_fsetxattr,
        SYS_removexattr,
        SYS_lremovexattr,
        SYS_fremovexattr,
        SYS_openat2,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend_from_slice(&[
        SYS_unlink,
        SYS_rename,
        SYS_mkdir,
        SYS_rmdir,
        SYS_link,
        SYS_symlink,
        SYS_chmod,
        SYS_chown,
        SYS_lchown,
        SYS_creat,
        SYS_utime,
        SYS_utimes,
        SYS_futimesat,
    ]);
    v
}

fn filter_head() -> Vec<SockFilter> {
    #[allow(unused_mut)]
    let mut f = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        // The x32 ABI numbers syscalls from 0x40000000 and would otherwise bypass the rules.
        f.push(jump(JGE_K, 0x4000_0000, 0, 1));
        f.push(stmt(RET_K, RET_ERRNO | libc::EPERM as u32));
    }
    f
}

fn deny_all(f: &mut Vec<SockFilter>, rules: &[(libc::c_long, i32)]) {
    for (nr, errno) in rules {
        f.push(jump(JEQ_K, *nr as u32, 0, 1));
        f.push(stmt(RET_K, RET_ERRNO | *errno as u32));
    }
}

/// The zygote's own filter, inherited by every child. Installed once per zygote, so the long
/// list costs nothing per execution (the kernel compiles each filter when it is installed).
pub fn zygote_filter() -> Vec<SockFilter> {
    let mut f = filter_head();
    deny_all(&mut f, &denied());
    let n = IOCTL_ALLOWED.len() as u8;
    // jeq ioctl; ld arg1; (jeq allowed_i -> allow)*; ret ENOTTY; ret ALLOW
    f.push(jump(JEQ_K, libc::SYS_ioctl as u32, 0, n + 3));
    f.push(stmt(LD_W_ABS, off_arg_lo(1)));
    for (i, a) in IOCTL_ALLOWED.iter().enumerate() {
        f.push(jump(JEQ_K, *a, n - i as u8, 0));
    }
    f.push(stmt(RET_K, RET_ERRNO | libc::ENOTTY as u32));
    f.push(stmt(RET_K, RET_ALLOW));
    // Every other syscall.
    f.push(stmt(RET_K, RET_ALLOW));
    f
}

/// The short filter each child adds for itself (pid `pid`): no process creation, signals only
/// to itself, and, without Landlock, no writes anywhere.
pub fn child_filter(pid: libc::pid_t, deny_writes: bool) -> Vec<SockFilter> {
    let mut f = filter_head();
    deny_all(&mut f, &denied_to_children());
    if deny_writes {
        let rules: Vec<_> = denied_without_landlock()
            .into_iter()
            .map(|nr| (nr, libc::EPERM))
            .collect();
        deny_all(&mut f, &rules);
    }
    // Blocks that inspect arguments load them into the accumulator, so each ends in a return.
    let me = pid as u32;
    let signal_rules: &[(libc::c_long, &[u32])] = &[
        (libc::SYS_kill, &[me, 0, me.wrapping_neg()]),
        (libc::SYS_tkill, &[me]),
        (libc::SYS_tgkill, &[me]),
        (libc::SYS_rt_sigqueueinfo, &[me]),
        (libc::SYS_rt_tgsigqueueinfo, &[me]),
        // Resource limits of itself only (pid 0 is "the caller"); raising a hard limit needs a
        // capability children do not have.
        (libc::SYS_prlimit64, &[0, me]),
    ];
    for (nr, allowed) in signal_rules {
        let n = allowed.len() as u8;
        // jeq nr; ld arg0; (jeq allowed_i -> allow)*; ret EPERM; ret ALLOW
        f.push(jump(JEQ_K, *nr as u32, 0, n + 3));
        f.push(stmt(LD_W_ABS, off_arg_lo(0)));
        for (i, a) in allowed.iter().enumerate() {
            f.push(jump(JEQ_K, *a, n - i as u8, 0));
        }
        f.push(stmt(RET_K, RET_ERRNO | libc::EPERM as u32));
        f.push(stmt(RET_K, RET_ALLOW));
    }
    if deny_writes {
        const WRITE_FLAGS: u32 =
            (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u32;
        let mut opens: Vec<(libc::c_long, u32)> = vec![(libc::SYS_openat, 2)];
        #[cfg(target_arch = "x86_64")]
        opens.push((libc::SYS_open, 1));
        for (nr, arg) in opens {
            f.push(jump(JEQ_K, nr as u32, 0, 4));
            f.push(stmt(LD_W_ABS, off_arg_lo(arg)));
            f.push(jump(JSET_K, WRITE_FLAGS, 0, 1));
            f.push(stmt(RET_K, RET_ERRNO | libc::EACCES as u32));
            f.push(stmt(RET_K, RET_ALLOW));
        }
    }
    f.push(stmt(RET_K, RET_ALLOW));
    f
}

/// # Safety
/// Installs a filter on the calling thread; requires no_new_privs (set by `enter`).
pub unsafe fn install_filter(filter: &[SockFilter]) -> io::Result<()> {
    let prog = SockFprog {
        len: filter.len() as u16,
        filter: filter.as_ptr(),
    };
    check(libc::prctl(
        libc::PR_SET_SECCOMP,
        libc::SECCOMP_MODE_FILTER as libc::c_ulong,
        &prog as *const SockFprog as libc::c_ulong,
        0,
        0,
    ))
}

#[cfg(test)]
mod tests {
    //! Each test forks a child that applies the layers to itself and reports with its exit code;
    //! the test process is never restricted.
    use super::*;

    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only runs `f` and exits; the harness thread state is irrelevant to it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
                libc::_exit(code);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status), "child died: {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }

    fn restrict(deny_writes: bool) {
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            install_filter(&zygote_filter()).unwrap();
            install_filter(&child_filter(libc::getpid(), deny_writes)).unwrap();
        }
    }

    fn errno() -> i32 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn filter_jumps_stay_in_bounds() {
        for f in [
            zygote_filter(),
            child_filter(1234, false),
            child_filter(1234, true),
        ] {
            assert!(f.len() < 4096);
            for (i, ins) in f.iter().enumerate() {
                if ins.code & 0x07 == 0x05 {
                    assert!(
                        i + 1 + (ins.jt.max(ins.jf) as usize) < f.len(),
                        "jump at {i}"
                    );
                }
            }
            assert_eq!(f.last().unwrap().k, RET_ALLOW);
        }
        // The per-child part stays short: it is compiled once per execution.
        assert!(child_filter(1234, false).len() < 60);
    }

    #[test]
    fn no_process_creation_even_for_root() {
        if !seccomp_available() {
            return;
        }
        let code = in_child(|| {
            restrict(false);
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 || errno() != libc::EPERM {
                    return 1;
                }
                let r = libc::syscall(libc::SYS_clone3, 0usize, 0usize);
                if r >= 0 || errno() != libc::ENOSYS {
                    return 2;
                }
                let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                if s >= 0 || errno() != libc::EPERM {
                    return 3;
                }
                let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if s >= 0 {
                    return 4;
                }
                let argv = [std::ptr::null::<libc::c_char>()];
                libc::execv(c"/bin/true".as_ptr(), argv.as_ptr());
                if errno() != libc::EPERM {
                    return 5;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn host_facing_calls_are_refused() {
        if !seccomp_available() {
            return;
        }
        let parent = unsafe { libc::getpid() };
        let code = in_child(move || {
            restrict(false);
            unsafe {
                let lim = libc::rlimit {
                    rlim_cur: 16,
                    rlim_max: 16,
                };
                if libc::prlimit(parent, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) == 0
                    || errno() != libc::EPERM
                {
                    return 1;
                }
                // Its own limits stay its own business.
                let mut cur: libc::rlimit = std::mem::zeroed();
                if libc::prlimit(0, libc::RLIMIT_NOFILE, std::ptr::null(), &mut cur) != 0 {
                    return 2;
                }
                if libc::setpriority(libc::PRIO_PROCESS, parent as libc::id_t, 19) == 0 {
                    return 3;
                }
                let param = libc::sched_param { sched_priority: 1 };
                if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 {
                    return 4;
                }
                if libc::shmget(libc::IPC_PRIVATE, 4096, 0o600) >= 0 || errno() != libc::EPERM {
                    return 5;
                }
                let v = [0u8; 1];
                let r = libc::setxattr(c"/".as_ptr(), c"user.x".as_ptr(), v.as_ptr().cast(), 1, 0);
                if r == 0 || errno() != libc::EOPNOTSUPP {
                    return 6;
                }
                let mut flags: libc::c_long = 0;
                // FS_IOC_GETFLAGS: not on the list.
                if libc::ioctl(0, 0x80086601, &mut flags) == 0 || errno() != libc::ENOTTY {
                    return 7;
                }
                if libc::mount(
                    c"x".as_ptr(),
                    c"/".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) == 0
                    || errno() != libc::EPERM
                {
                    return 8;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn signals_only_to_self() {
        if !seccomp_available() {
            return;
        }
        let parent = unsafe { libc::getpid() };
        let code = in_child(move || {
            restrict(false);
            unsafe {
                if libc::kill(parent, 0) == 0 || errno() != libc::EPERM {
                    return 1;
                }
                if libc::kill(-1, 0) == 0 {
                    return 2;
                }
                if libc::kill(libc::getpid(), 0) != 0 {
                    return 3;
                }
                if libc::kill(0, 0) != 0 {
                    return 4;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn without_landlock_nothing_is_writable() {
        if !seccomp_available() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("azr-sbx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let existing = dir.join("keep.txt");
        std::fs::write(&existing, b"keep").unwrap();
        let (d2, e2) = (dir.clone(), existing.clone());
        let code = in_child(move || {
            restrict(true);
            if std::fs::write(d2.join("new.txt"), b"x").is_ok() {
                return 1;
            }
            if std::fs::remove_file(&e2).is_ok() {
                return 2;
            }
            if std::fs::OpenOptions::new().append(true).open(&e2).is_ok() {
                return 3;
            }
            if std::fs::read(&e2).map(|b| b != b"keep").unwrap_or(true) {
                return 4;
            }
            0
        });
        assert_eq!(code, 0);
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn landlock_confines_reads_and_writes() {
        let abi = landlock_abi();
        if abi == 0 {
            return;
        }
        let base = std::env::temp_dir().join(format!("azr-ll-test-{}", std::process::id()));
        let work = base.join("work");
        let outside = base.join("outside");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        let ruleset = build_ruleset(abi, &[PathBuf::from("/usr")], &work).unwrap();
        let (w2, o2) = (work.clone(), outside.clone());
        let code = in_child(move || unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) < 0 {
                return 1;
            }
            if std::fs::write(w2.join("ok.txt"), b"x").is_err() {
                return 2;
            }
            if std::fs::write(o2.join("bad.txt"), b"x").is_ok() {
                return 3;
            }
            if std::fs::read(o2.join("secret")).is_ok() {
                return 4;
            }
            if std::fs::read_dir("/usr").is_err() {
                return 5;
            }
            if std::fs::read("/proc/self/environ").is_ok() {
                return 6;
            }
            0
        });
        assert_eq!(code, 0);
        assert!(!outside.join("bad.txt").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
