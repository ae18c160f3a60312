//! System calls without libc: no `errno`, no locks, no thread-local state.
//!
//! # Why
//! The native backend starts a run's processes with `CLONE_VM` (see `native`'s module
//! docs): the box's init and, until `execve`, the program share the judge's address
//! space instead of copying its page tables. That makes starting a run independent
//! of how much memory the judge holds (a `fork` copies the page tables of every
//! mapping: ~80 µs for the bare `judge` binary, milliseconds for a server holding
//! test data), and makes the program's `execve` cheap (no copy to tear down).
//!
//! The price: code running in those children shares the judge's memory *and*, since
//! they inherit the thread pointer, the cloning thread's thread-local storage, while
//! that thread keeps running. libc wrappers write `errno` there on failure, so child
//! code must not call them: everything between the clone and `execve` goes through
//! [`syscall`], which returns `-errno` in a register and touches no memory.
//!
//! [`clone_on_stack`] starts a child on a stack of its own ([`ChildStacks`]) and runs
//! an `extern "C"` entry function there; the entry function must never return.

use std::io;

/// A failed system call's errno (positive).
pub(crate) type Errno = i32;

/// Turns a raw return value into `Ok(value)` or `Err(errno)`.
#[inline(always)]
pub(crate) fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(-ret as Errno)
    } else {
        Ok(ret as usize)
    }
}

/// A raw system call with up to six arguments; returns the kernel's value
/// (`-errno` on failure, see [`check`]).
///
/// # Safety
/// The caller guarantees that the arguments are what the kernel expects for `nr`
/// (pointers to live memory of the right layout).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 Linux syscall convention; the kernel clobbers rcx and r11
    // only. Memory may be read or written by the kernel (no `nomem`/`readonly`).
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw system call with up to six arguments (see the x86_64 version).
///
/// # Safety
/// As the x86_64 version.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 Linux syscall convention (number in x8, result in x0).
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the native sandbox supports x86_64 and aarch64 Linux only");

/// `raw::sc!(SYS_x, a, b, ...)`: a raw system call with integer or pointer arguments
/// (each cast to `usize`), returning the kernel's `isize`.
macro_rules! sc {
    ($nr:expr $(,)?) => {
        $crate::sandbox::raw::syscall($nr, [0; 6])
    };
    ($nr:expr, $a:expr $(,)?) => {
        $crate::sandbox::raw::syscall($nr, [$a as usize, 0, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr $(,)?) => {
        $crate::sandbox::raw::syscall($nr, [$a as usize, $b as usize, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr $(,)?) => {
        $crate::sandbox::raw::syscall($nr, [$a as usize, $b as usize, $c as usize, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr $(,)?) => {
        $crate::sandbox::raw::syscall(
            $nr,
            [$a as usize, $b as usize, $c as usize, $d as usize, 0, 0],
        )
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr $(,)?) => {
        $crate::sandbox::raw::syscall(
            $nr,
            [$a as usize, $b as usize, $c as usize, $d as usize, $e as usize, 0],
        )
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr, $f:expr $(,)?) => {
        $crate::sandbox::raw::syscall(
            $nr,
            [$a as usize, $b as usize, $c as usize, $d as usize, $e as usize, $f as usize],
        )
    };
}
pub(crate) use sc;

/// Child entry point for [`clone_on_stack`]: runs on the new stack, must not return.
pub(crate) type Entry = unsafe extern "C" fn(arg: *mut libc::c_void) -> !;

/// Issues `clone` or `clone3` (`nr`, arguments `a`) so that the child starts on the
/// stack the arguments name and calls `entry(arg)` there; the parent gets the raw
/// result (child pid, or `-errno`).
///
/// # Safety
/// `a` must describe a valid clone with a child stack (its top 16-byte aligned) that
/// nothing else uses while the child runs; `entry` must never return and, while it
/// shares memory with the caller (`CLONE_VM`), only make raw system calls on memory
/// that outlives the child.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn clone_on_stack(
    nr: libc::c_long,
    a: [usize; 5],
    entry: Entry,
    arg: *mut libc::c_void,
) -> isize {
    let ret: isize;
    // SAFETY: the parent path is a plain syscall. In the child (rax = 0) the kernel
    // has switched rsp to the new stack's top (16-byte aligned): the child calls
    // entry(arg) with a fresh frame (rbp = 0 ends backtraces) and never comes back
    // into this function's compiled code, whose stack slots it does not have.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r12") arg,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// See the x86_64 version.
///
/// # Safety
/// As the x86_64 version.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn clone_on_stack(
    nr: libc::c_long,
    a: [usize; 5],
    entry: Entry,
    arg: *mut libc::c_void,
) -> isize {
    let ret: isize;
    // SAFETY: as the x86_64 version; the kernel set sp to the new stack's top.
    unsafe {
        std::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            "mov x29, xzr",
            "mov x0, x20",
            "blr x21",
            "brk 0",
            "2:",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x20") arg,
            in("x21") entry,
            lateout("x30") _,
        );
    }
    ret
}

/// The kernel's `struct sigaction` for `rt_sigaction` on x86_64 and aarch64 (not
/// glibc's, whose mask is 128 bytes): all zero is `SIG_DFL`, no flags, empty mask.
#[repr(C)]
#[derive(Default)]
pub(crate) struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Size of each child stack in bytes. The child code is shallow (no recursion, small
/// frames); 256 KiB leaves ample room for unoptimised builds.
pub(crate) const CHILD_STACK: usize = 256 << 10;

const PAGE: usize = 4096;

/// Number of stacks in [`ChildStacks`].
const STACKS: usize = 3;

/// Indexes of the two init stacks.
pub(crate) const INIT_STACKS: [usize; 2] = [0, 1];

/// The init stack that is not `stack`: a box's next init is made on it while the
/// current one (on `stack`) still waits for its program.
pub(crate) fn other_init_stack(stack: usize) -> usize {
    if stack == INIT_STACKS[0] {
        INIT_STACKS[1]
    } else {
        INIT_STACKS[0]
    }
}

/// Index of the program's stack.
pub(crate) const PROGRAM_STACK: usize = 2;

/// The stacks of a box's children, each above a guard page, mapped once per box:
/// two for inits ([`INIT_STACKS`]: a box's next init is made while the current one
/// still waits for its program) and one for the program before `execve`
/// ([`PROGRAM_STACK`]; a box runs one program at a time).
///
/// Pages are faulted in by the children that use them (a few at the top of each
/// stack) and stay: they belong to the judge's memory, so they are charged to the
/// judge's memory cgroup (the memory's owner), never to a run's. Only those pages
/// are resident: mapping the stacks costs the judge no memory up front.
pub(crate) struct ChildStacks {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; which thread uses it is
// governed by the box that owns it (one run at a time).
unsafe impl Send for ChildStacks {}
// SAFETY: as above; shared references give out addresses only.
unsafe impl Sync for ChildStacks {}

impl ChildStacks {
    /// Maps the stacks (`STACKS × (4 KiB guard + CHILD_STACK)`).
    ///
    /// Errors: the `mmap`/`mprotect` failure.
    pub fn new() -> io::Result<ChildStacks> {
        let len = STACKS * (PAGE + CHILD_STACK);
        // SAFETY: anonymous private mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stacks = ChildStacks {
            base: base.cast(),
            len,
        };
        for i in 0..STACKS {
            let guard = stacks.region(i);
            // SAFETY: the guard page lies inside our mapping.
            if unsafe { libc::mprotect(guard.cast(), PAGE, libc::PROT_NONE) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(stacks)
    }

    fn region(&self, i: usize) -> *mut u8 {
        // SAFETY: i < STACKS: inside the mapping.
        unsafe { self.base.add(i * (PAGE + CHILD_STACK)) }
    }

    /// Lowest address of stack `i` and its size in bytes.
    pub fn stack(&self, i: usize) -> (*mut u8, usize) {
        assert!(i < STACKS, "stack {i} of {STACKS}");
        // SAFETY: inside the mapping, after the guard page.
        (unsafe { self.region(i).add(PAGE) }, CHILD_STACK)
    }
}

impl Drop for ChildStacks {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no child runs on it any more (the box
        // that owns it has no run in flight when dropped).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_splits_errno_from_values() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(42), Ok(42));
        assert_eq!(check(-(libc::ENOENT as isize)), Err(libc::ENOENT));
        assert_eq!(check(-4095), Err(4095));
        // Large "negative" values outside the errno range are results (e.g. addresses).
        assert_eq!(check(-4096), Ok((-4096isize) as usize));
    }

    #[test]
    fn raw_syscalls_return_values_and_errors_without_errno() {
        // SAFETY: getpid takes no arguments.
        let pid = unsafe { sc!(libc::SYS_getpid) };
        assert_eq!(pid as u32, std::process::id());
        let before = crate::sandbox::sys::errno();
        // SAFETY: close of a descriptor that cannot exist.
        let r = unsafe { sc!(libc::SYS_close, -1i32 as usize) };
        assert_eq!(check(r), Err(libc::EBADF));
        assert_eq!(crate::sandbox::sys::errno(), before, "errno untouched");
    }

    #[test]
    fn stacks_are_mapped_with_guards() {
        let s = ChildStacks::new().unwrap();
        for i in 0..STACKS {
            let (lo, len) = s.stack(i);
            assert_eq!(len, CHILD_STACK);
            assert_eq!(lo as usize % PAGE, 0);
            // SAFETY: the last byte of the stack is mapped read-write.
            unsafe { *lo.add(len - 1) = 1 };
        }
    }
}
