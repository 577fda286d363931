//! Syscall numbers by name, for the seccomp profile compiler: the union of the names of
//! x86_64, i386 (the kernel's uapi `asm/unistd_64.h`, `asm/unistd_32.h`), aarch64, arm EABI and
//! mips o32 (the musl tables of the `libc` crate 0.2.191). Generated; `NONE` marks a name the
//! arch lacks. A build carries the tables of its own arch and its compat arch only.

pub(super) const NONE: u16 = u16::MAX;
/// Sorted, one per line; index `i` of each table is the number of the `i`-th name.
pub(super) const NAMES: &str = "\
accept\n\
accept4\n\
access\n\
acct\n\
add_key\n\
adjtimex\n\
afs_syscall\n\
alarm\n\
arch_prctl\n\
bdflush\n\
bind\n\
bpf\n\
break\n\
brk\n\
cachectl\n\
cacheflush\n\
capget\n\
capset\n\
chdir\n\
chmod\n\
chown\n\
chown32\n\
chroot\n\
clock_adjtime\n\
clock_adjtime64\n\
clock_getres\n\
clock_getres_time64\n\
clock_gettime\n\
clock_gettime64\n\
clock_nanosleep\n\
clock_nanosleep_time64\n\
clock_settime\n\
clock_settime64\n\
clone\n\
clone3\n\
close\n\
close_range\n\
connect\n\
copy_file_range\n\
creat\n\
create_module\n\
delete_module\n\
dup\n\
dup2\n\
dup3\n\
epoll_create\n\
epoll_create1\n\
epoll_ctl\n\
epoll_ctl_old\n\
epoll_pwait\n\
epoll_pwait2\n\
epoll_wait\n\
epoll_wait_old\n\
eventfd\n\
eventfd2\n\
execve\n\
execveat\n\
exit\n\
exit_group\n\
faccessat\n\
faccessat2\n\
fadvise64\n\
fadvise64_64\n\
fallocate\n\
fanotify_init\n\
fanotify_mark\n\
fchdir\n\
fchmod\n\
fchmodat\n\
fchown\n\
fchown32\n\
fchownat\n\
fcntl\n\
fcntl64\n\
fdatasync\n\
fgetxattr\n\
finit_module\n\
flistxattr\n\
flock\n\
fork\n\
fremovexattr\n\
fsconfig\n\
fsetxattr\n\
fsmount\n\
fsopen\n\
fspick\n\
fstat\n\
fstat64\n\
fstatat64\n\
fstatfs\n\
fstatfs64\n\
fsync\n\
ftime\n\
ftruncate\n\
ftruncate64\n\
futex\n\
futex_time64\n\
futex_waitv\n\
futimesat\n\
get_kernel_syms\n\
get_mempolicy\n\
get_robust_list\n\
get_thread_area\n\
getcpu\n\
getcwd\n\
getdents\n\
getdents64\n\
getegid\n\
getegid32\n\
geteuid\n\
geteuid32\n\
getgid\n\
getgid32\n\
getgroups\n\
getgroups32\n\
getitimer\n\
getpeername\n\
getpgid\n\
getpgrp\n\
getpid\n\
getpmsg\n\
getppid\n\
getpriority\n\
getrandom\n\
getresgid\n\
getresgid32\n\
getresuid\n\
getresuid32\n\
getrlimit\n\
getrusage\n\
getsid\n\
getsockname\n\
getsockopt\n\
gettid\n\
gettimeofday\n\
getuid\n\
getuid32\n\
getxattr\n\
gtty\n\
idle\n\
init_module\n\
inotify_add_watch\n\
inotify_init\n\
inotify_init1\n\
inotify_rm_watch\n\
io_cancel\n\
io_destroy\n\
io_getevents\n\
io_pgetevents\n\
io_pgetevents_time64\n\
io_setup\n\
io_submit\n\
io_uring_enter\n\
io_uring_register\n\
io_uring_setup\n\
ioctl\n\
ioperm\n\
iopl\n\
ioprio_get\n\
ioprio_set\n\
ipc\n\
kcmp\n\
kexec_file_load\n\
kexec_load\n\
keyctl\n\
kill\n\
landlock_add_rule\n\
landlock_create_ruleset\n\
landlock_restrict_self\n\
lchown\n\
lchown32\n\
lgetxattr\n\
link\n\
linkat\n\
listen\n\
listxattr\n\
llistxattr\n\
lock\n\
lookup_dcookie\n\
lremovexattr\n\
lseek\n\
lsetxattr\n\
lstat\n\
lstat64\n\
madvise\n\
mbind\n\
membarrier\n\
memfd_create\n\
memfd_secret\n\
migrate_pages\n\
mincore\n\
mkdir\n\
mkdirat\n\
mknod\n\
mknodat\n\
mlock\n\
mlock2\n\
mlockall\n\
mmap\n\
mmap2\n\
modify_ldt\n\
mount\n\
mount_setattr\n\
move_mount\n\
move_pages\n\
mprotect\n\
mpx\n\
mq_getsetattr\n\
mq_notify\n\
mq_open\n\
mq_timedreceive\n\
mq_timedreceive_time64\n\
mq_timedsend\n\
mq_timedsend_time64\n\
mq_unlink\n\
mremap\n\
mseal\n\
msgctl\n\
msgget\n\
msgrcv\n\
msgsnd\n\
msync\n\
munlock\n\
munlockall\n\
munmap\n\
name_to_handle_at\n\
nanosleep\n\
newfstatat\n\
nfsservctl\n\
nice\n\
oldfstat\n\
oldlstat\n\
oldolduname\n\
oldstat\n\
olduname\n\
open\n\
open_by_handle_at\n\
open_tree\n\
openat\n\
openat2\n\
pause\n\
pciconfig_iobase\n\
pciconfig_read\n\
pciconfig_write\n\
perf_event_open\n\
personality\n\
pidfd_getfd\n\
pidfd_open\n\
pidfd_send_signal\n\
pipe\n\
pipe2\n\
pivot_root\n\
pkey_alloc\n\
pkey_free\n\
pkey_mprotect\n\
poll\n\
ppoll\n\
ppoll_time64\n\
prctl\n\
pread64\n\
preadv\n\
preadv2\n\
prlimit64\n\
process_madvise\n\
process_mrelease\n\
process_vm_readv\n\
process_vm_writev\n\
prof\n\
profil\n\
pselect6\n\
pselect6_time64\n\
ptrace\n\
putpmsg\n\
pwrite64\n\
pwritev\n\
pwritev2\n\
query_module\n\
quotactl\n\
quotactl_fd\n\
read\n\
readahead\n\
readdir\n\
readlink\n\
readlinkat\n\
readv\n\
reboot\n\
recv\n\
recvfrom\n\
recvmmsg\n\
recvmmsg_time64\n\
recvmsg\n\
remap_file_pages\n\
removexattr\n\
rename\n\
renameat\n\
renameat2\n\
request_key\n\
restart_syscall\n\
rmdir\n\
rseq\n\
rt_sigaction\n\
rt_sigpending\n\
rt_sigprocmask\n\
rt_sigqueueinfo\n\
rt_sigreturn\n\
rt_sigsuspend\n\
rt_sigtimedwait\n\
rt_sigtimedwait_time64\n\
rt_tgsigqueueinfo\n\
sched_get_priority_max\n\
sched_get_priority_min\n\
sched_getaffinity\n\
sched_getattr\n\
sched_getparam\n\
sched_getscheduler\n\
sched_rr_get_interval\n\
sched_rr_get_interval_time64\n\
sched_setaffinity\n\
sched_setattr\n\
sched_setparam\n\
sched_setscheduler\n\
sched_yield\n\
seccomp\n\
security\n\
select\n\
semctl\n\
semget\n\
semop\n\
semtimedop\n\
semtimedop_time64\n\
send\n\
sendfile\n\
sendfile64\n\
sendmmsg\n\
sendmsg\n\
sendto\n\
set_mempolicy\n\
set_mempolicy_home_node\n\
set_robust_list\n\
set_thread_area\n\
set_tid_address\n\
setdomainname\n\
setfsgid\n\
setfsgid32\n\
setfsuid\n\
setfsuid32\n\
setgid\n\
setgid32\n\
setgroups\n\
setgroups32\n\
sethostname\n\
setitimer\n\
setns\n\
setpgid\n\
setpriority\n\
setregid\n\
setregid32\n\
setresgid\n\
setresgid32\n\
setresuid\n\
setresuid32\n\
setreuid\n\
setreuid32\n\
setrlimit\n\
setsid\n\
setsockopt\n\
settimeofday\n\
setuid\n\
setuid32\n\
setxattr\n\
sgetmask\n\
shmat\n\
shmctl\n\
shmdt\n\
shmget\n\
shutdown\n\
sigaction\n\
sigaltstack\n\
signal\n\
signalfd\n\
signalfd4\n\
sigpending\n\
sigprocmask\n\
sigreturn\n\
sigsuspend\n\
socket\n\
socketcall\n\
socketpair\n\
splice\n\
ssetmask\n\
stat\n\
stat64\n\
statfs\n\
statfs64\n\
statx\n\
stime\n\
stty\n\
swapoff\n\
swapon\n\
symlink\n\
symlinkat\n\
sync\n\
sync_file_range\n\
syncfs\n\
sys_setaltroot\n\
syscall\n\
sysfs\n\
sysinfo\n\
syslog\n\
sysmips\n\
tee\n\
tgkill\n\
time\n\
timer_create\n\
timer_delete\n\
timer_getoverrun\n\
timer_gettime\n\
timer_gettime64\n\
timer_settime\n\
timer_settime64\n\
timerfd\n\
timerfd_create\n\
timerfd_gettime\n\
timerfd_gettime64\n\
timerfd_settime\n\
timerfd_settime64\n\
times\n\
tkill\n\
truncate\n\
truncate64\n\
tuxcall\n\
ugetrlimit\n\
ulimit\n\
umask\n\
umount\n\
umount2\n\
uname\n\
unlink\n\
unlinkat\n\
unshare\n\
uselib\n\
userfaultfd\n\
ustat\n\
utime\n\
utimensat\n\
utimensat_time64\n\
utimes\n\
vfork\n\
vhangup\n\
vm86\n\
vm86old\n\
vmsplice\n\
vserver\n\
wait4\n\
waitid\n\
waitpid\n\
write\n\
writev\n\
";
#[cfg(any(test, target_arch = "x86_64"))]
pub(super) const X86_64: [u16; 458] = [
    43, 288, 21, 163, 248, 159, 183, 37, 158, NONE, 49, 321, NONE, 12, NONE, NONE, 125, 126, 80,
    90, 92, NONE, 161, 305, NONE, 229, NONE, 228, NONE, 230, NONE, 227, NONE, 56, 435, 3, 436, 42,
    326, 85, 174, 176, 32, 33, 292, 213, 291, 233, 214, 281, 441, 232, 215, 284, 290, 59, 322, 60,
    231, 269, 439, 221, NONE, 285, 300, 301, 81, 91, 268, 93, NONE, 260, 72, NONE, 75, 193, 313,
    196, 73, 57, 199, 431, 190, 432, 430, 433, 5, NONE, NONE, 138, NONE, 74, NONE, 77, NONE, 202,
    NONE, 449, 261, 177, 239, 274, 211, 309, 79, 78, 217, 108, NONE, 107, NONE, 104, NONE, 115,
    NONE, 36, 52, 121, 111, 39, 181, 110, 140, 318, 120, NONE, 118, NONE, 97, 98, 124, 51, 55, 186,
    96, 102, NONE, 191, NONE, NONE, 175, 254, 253, 294, 255, 210, 207, 208, 333, NONE, 206, 209,
    426, 427, 425, 16, 173, 172, 252, 251, NONE, 312, 320, 246, 250, 62, 445, 444, 446, 94, NONE,
    192, 86, 265, 50, 194, 195, NONE, 212, 198, 8, 189, 6, NONE, 28, 237, 324, 319, 447, 256, 27,
    83, 258, 133, 259, 149, 325, 151, 9, NONE, 154, 165, 442, 429, 279, 10, NONE, 245, 244, 240,
    243, NONE, 242, NONE, 241, 25, NONE, 71, 68, 70, 69, 26, 150, 152, 11, 303, 35, 262, 180, NONE,
    NONE, NONE, NONE, NONE, NONE, 2, 304, 428, 257, 437, 34, NONE, NONE, NONE, 298, 135, 438, 434,
    424, 22, 293, 155, 330, 331, 329, 7, 271, NONE, 157, 17, 295, 327, 302, 440, 448, 310, 311,
    NONE, NONE, 270, NONE, 101, 182, 18, 296, 328, 178, 179, 443, 0, 187, NONE, 89, 267, 19, 169,
    NONE, 45, 299, NONE, 47, 216, 197, 82, 264, 316, 249, 219, 84, 334, 13, 127, 14, 129, 15, 130,
    128, NONE, 297, 146, 147, 204, 315, 143, 145, 148, NONE, 203, 314, 142, 144, 24, 317, 185, 23,
    66, 64, 65, 220, NONE, NONE, 40, NONE, 307, 46, 44, 238, 450, 273, 205, 218, 171, 123, NONE,
    122, NONE, 106, NONE, 116, NONE, 170, 38, 308, 109, 141, 114, NONE, 119, NONE, 117, NONE, 113,
    NONE, 160, 112, 54, 164, 105, NONE, 188, NONE, 30, 31, 67, 29, 48, NONE, 131, NONE, 282, 289,
    NONE, NONE, NONE, NONE, 41, NONE, 53, 275, NONE, 4, NONE, 137, NONE, 332, NONE, NONE, 168, 167,
    88, 266, 162, 277, 306, NONE, NONE, 139, 99, 103, NONE, 276, 234, 201, 222, 226, 225, 224,
    NONE, 223, NONE, NONE, 283, 287, NONE, 286, NONE, 100, 200, 76, NONE, 184, NONE, NONE, 95,
    NONE, 166, 63, 87, 263, 272, 134, 323, 136, 132, 280, NONE, 235, 58, 153, NONE, NONE, 278, 236,
    61, 247, NONE, 1, 20,
];
#[cfg(any(test, target_arch = "x86_64"))]
pub(super) const I386: [u16; 458] = [
    NONE, 364, 33, 51, 286, 124, 137, 27, 384, 134, 361, 357, 17, 45, NONE, NONE, 184, 185, 12, 15,
    182, 212, 61, 343, 405, 266, 406, 265, 403, 267, 407, 264, 404, 120, 435, 6, 436, 362, 377, 8,
    127, 129, 41, 63, 330, 254, 329, 255, NONE, 319, 441, 256, NONE, 323, 328, 11, 358, 1, 252,
    307, 439, 250, 272, 324, 338, 339, 133, 94, 306, 95, 207, 298, 55, 221, 148, 231, 350, 234,
    143, 2, 237, 431, 228, 432, 430, 433, 108, 197, 300, 100, 269, 118, 35, 93, 194, 240, 422, 449,
    299, 130, 275, 312, 244, 318, 183, 141, 220, 50, 202, 49, 201, 47, 200, 80, 205, 105, 368, 132,
    65, 20, 188, 64, 96, 355, 171, 211, 165, 209, 76, 77, 147, 367, 365, 224, 78, 24, 199, 229, 32,
    112, 128, 292, 291, 332, 293, 249, 246, 247, 385, 416, 245, 248, 426, 427, 425, 54, 101, 110,
    290, 289, 117, 349, NONE, 283, 288, 37, 445, 444, 446, 16, 198, 230, 9, 303, 363, 232, 233, 53,
    253, 236, 19, 227, 107, 196, 219, 274, 375, 356, 447, 294, 218, 39, 296, 14, 297, 150, 376,
    152, 90, 192, 123, 21, 442, 429, 317, 125, 56, 282, 281, 277, 280, 419, 279, 418, 278, 163,
    NONE, 402, 399, 401, 400, 144, 151, 153, 91, 341, 162, NONE, 169, 34, 28, 84, 59, 18, 109, 5,
    342, 428, 295, 437, 29, NONE, NONE, NONE, 336, 136, 438, 434, 424, 42, 331, 217, 381, 382, 380,
    168, 309, 414, 172, 180, 333, 378, 340, 440, 448, 347, 348, 44, 98, 308, 413, 26, 189, 181,
    334, 379, 167, 131, 443, 3, 225, 89, 85, 305, 145, 88, NONE, 371, 337, 417, 372, 257, 235, 38,
    302, 353, 287, 0, 40, 386, 174, 176, 175, 178, 173, 179, 177, 421, 335, 159, 160, 242, 352,
    155, 157, 161, 423, 241, 351, 154, 156, 158, 354, NONE, 82, 394, 393, NONE, NONE, 420, NONE,
    187, 239, 345, 370, 369, 276, 450, 311, 243, 258, 121, 139, 216, 138, 215, 46, 214, 81, 206,
    74, 104, 346, 57, 97, 71, 204, 170, 210, 164, 208, 70, 203, 75, 66, 366, 79, 23, 213, 226, 68,
    397, 396, 398, 395, 373, 67, 186, 48, 321, 327, 73, 126, 119, 72, 359, 102, 360, 313, 69, 106,
    195, 99, 268, 383, 25, 31, 115, 87, 83, 304, 36, 314, 344, NONE, NONE, 135, 116, 103, NONE,
    315, 270, 13, 259, 263, 262, 261, 408, 260, 409, NONE, 322, 326, 410, 325, 411, 43, 238, 92,
    193, NONE, 191, 58, 60, 22, 52, 122, 10, 301, 310, 86, 374, 62, 30, 320, 412, 271, 190, 111,
    166, 113, 316, 273, 114, 284, 7, 4, 146,
];
#[cfg(any(test, target_arch = "aarch64"))]
pub(super) const AARCH64: [u16; 458] = [
    202, 242, NONE, 89, 217, 171, NONE, NONE, NONE, NONE, 200, 280, NONE, 214, NONE, NONE, 90, 91,
    49, NONE, NONE, NONE, 51, 266, NONE, 114, NONE, 113, NONE, 115, NONE, 112, NONE, 220, 435, 57,
    436, 203, 285, NONE, NONE, 106, 23, NONE, 24, NONE, 20, 21, NONE, 22, 441, NONE, NONE, NONE,
    19, 221, 281, 93, 94, 48, 439, 223, NONE, 47, 262, 263, 50, 52, 53, 55, NONE, 54, 25, NONE, 83,
    10, 273, 13, 32, NONE, 16, 431, 7, 432, 430, 433, 80, NONE, NONE, 44, NONE, 82, NONE, 46, NONE,
    98, NONE, 449, NONE, NONE, 236, 100, NONE, 168, 17, NONE, 61, 177, NONE, 175, NONE, 176, NONE,
    158, NONE, 102, 205, 155, NONE, 172, NONE, 173, 141, 278, 150, NONE, 148, NONE, 163, 165, 156,
    204, 209, 178, 169, 174, NONE, 8, NONE, NONE, 105, 27, NONE, 26, 28, 3, 1, 4, 292, NONE, 0, 2,
    426, 427, 425, 29, NONE, NONE, 31, 30, NONE, 272, NONE, 104, 219, 129, 445, 444, 446, NONE,
    NONE, 9, NONE, 37, 201, 11, 12, NONE, 18, 15, 62, 6, NONE, NONE, 233, 235, 283, 279, 447, 238,
    232, NONE, 34, NONE, 33, 228, 284, 230, 222, NONE, NONE, 40, 442, 429, 239, 226, NONE, 185,
    184, 180, 183, NONE, 182, NONE, 181, 216, 462, 187, 186, 188, 189, 227, 229, 231, 215, 264,
    101, 79, 42, NONE, NONE, NONE, NONE, NONE, NONE, NONE, 265, 428, 56, 437, NONE, NONE, NONE,
    NONE, 241, 92, 438, 434, 424, NONE, 59, 41, 289, 290, 288, NONE, 73, NONE, 167, 67, 69, 286,
    261, 440, 448, 270, 271, NONE, NONE, 72, NONE, 117, NONE, 68, 70, 287, NONE, 60, 443, 63, 213,
    NONE, NONE, 78, 65, 142, NONE, 207, 243, NONE, 212, 234, 14, NONE, 38, 276, 218, 128, NONE,
    293, 134, 136, 135, 138, 139, 133, 137, NONE, 240, 125, 126, 123, 275, 121, 120, 127, NONE,
    122, 274, 118, 119, 124, 277, NONE, NONE, 191, 190, 193, 192, NONE, NONE, 71, NONE, 269, 211,
    206, 237, 450, 99, NONE, 96, 162, 152, NONE, 151, NONE, 144, NONE, 159, NONE, 161, 103, 268,
    154, 140, 143, NONE, 149, NONE, 147, NONE, 145, NONE, 164, 157, 208, 170, 146, NONE, 5, NONE,
    196, 195, 197, 194, 210, NONE, 132, NONE, NONE, 74, NONE, NONE, NONE, NONE, 198, NONE, 199, 76,
    NONE, NONE, NONE, 43, NONE, 291, NONE, NONE, 225, 224, NONE, 36, 81, 84, 267, NONE, NONE, NONE,
    179, 116, NONE, 77, 131, NONE, 107, 111, 109, 108, NONE, 110, NONE, NONE, 85, 87, NONE, 86,
    NONE, 153, 130, 45, NONE, NONE, NONE, NONE, 166, NONE, 39, 160, NONE, 35, 97, NONE, 282, NONE,
    NONE, 88, NONE, NONE, NONE, 58, NONE, NONE, 75, NONE, 260, 95, NONE, 64, 66,
];
#[cfg(any(test, target_arch = "aarch64", target_arch = "arm"))]
pub(super) const ARM: [u16; 458] = [
    285, 366, 33, 51, 309, 124, NONE, NONE, NONE, 134, 282, 386, NONE, 45, NONE, NONE, 184, 185,
    12, 15, 182, 212, 61, 372, NONE, 264, NONE, 263, NONE, 265, NONE, 262, NONE, 120, 435, 6, 436,
    283, 391, 8, NONE, 129, 41, 63, 358, 250, 357, 251, NONE, 346, 441, 252, NONE, 351, 356, 11,
    387, 1, 248, 334, 439, NONE, NONE, 352, 367, 368, 133, 94, 333, 95, 207, 325, 55, 221, 148,
    231, 379, 234, 143, 2, 237, 431, 228, 432, 430, 433, 108, 197, 327, 100, 267, 118, NONE, 93,
    194, 240, NONE, 449, 326, NONE, 320, 339, NONE, 345, 183, 141, 217, 50, 202, 49, 201, 47, 200,
    80, 205, 105, 287, 132, 65, 20, NONE, 64, 96, 384, 171, 211, 165, 209, NONE, 77, 147, 286, 295,
    224, 78, 24, 199, 229, NONE, NONE, 128, 317, 316, 360, 318, 247, 244, 245, NONE, NONE, 243,
    246, 426, 427, 425, 54, NONE, NONE, 315, 314, NONE, 378, NONE, 347, 311, 37, 445, 444, 446, 16,
    198, 230, 9, 330, 284, 232, 233, NONE, 249, 236, 19, 227, 107, 196, 220, 319, 389, 385, 447,
    NONE, 219, 39, 323, 14, 324, 150, 390, 152, NONE, 192, NONE, 21, 442, 429, 344, 125, NONE, 279,
    278, 274, 277, NONE, 276, NONE, 275, 163, 462, 304, 303, 302, 301, 144, 151, 153, 91, 370, 162,
    NONE, 169, 34, NONE, NONE, NONE, NONE, NONE, 5, 371, 428, 322, 437, 29, 271, 272, 273, 364,
    136, 438, 434, 424, 42, 359, 218, 395, 396, 394, 168, 336, NONE, 172, 180, 361, 392, 369, 440,
    448, 376, 377, NONE, NONE, 335, NONE, 26, NONE, 181, 362, 393, NONE, 131, 443, 3, 225, NONE,
    85, 332, 145, 88, 291, 292, 365, NONE, 297, 253, 235, 38, 329, 382, 310, 0, 40, NONE, 174, 176,
    175, 178, 173, 179, 177, NONE, 363, 159, 160, 242, 381, 155, 157, 161, NONE, 241, 380, 154,
    156, 158, 383, NONE, NONE, 300, 299, 298, 312, NONE, 289, 187, 239, 374, 296, 290, 321, 450,
    338, NONE, 256, 121, 139, 216, 138, 215, 46, 214, 81, 206, 74, 104, 375, 57, 97, 71, 204, 170,
    210, 164, 208, 70, 203, 75, 66, 294, 79, 23, 213, 226, NONE, 305, 308, 306, 307, 293, 67, 186,
    NONE, 349, 355, 73, 126, 119, 72, 281, NONE, 288, 340, NONE, 106, 195, 99, 266, 397, NONE,
    NONE, 115, 87, 83, 331, 36, NONE, 373, NONE, NONE, 135, 116, 103, NONE, 342, 268, NONE, 257,
    261, 260, 259, NONE, 258, NONE, NONE, 350, 354, NONE, 353, NONE, 43, 238, 92, 193, NONE, 191,
    NONE, 60, NONE, 52, 122, 10, 328, 337, 86, 388, 62, NONE, 348, NONE, 269, 190, 111, NONE, NONE,
    343, 313, 114, 280, NONE, 4, 146,
];
#[cfg(any(test, target_arch = "mips"))]
pub(super) const MIPS_O32: [u16; 458] = [
    4168, 4334, 4033, 4051, 4280, 4124, 4137, 4027, NONE, 4134, 4169, 4355, 4017, 4045, 4148, 4147,
    4204, 4205, 4012, 4015, 4202, NONE, 4061, 4341, NONE, 4264, NONE, 4263, NONE, 4265, NONE, 4262,
    NONE, 4120, 4435, 4006, 4436, 4170, 4360, 4008, NONE, 4129, 4041, 4063, 4327, 4248, 4326, 4249,
    NONE, 4313, 4441, 4250, NONE, 4319, 4325, 4011, 4356, 4001, 4246, 4300, 4439, NONE, NONE, 4320,
    4336, 4337, 4133, 4094, 4299, 4095, NONE, 4291, 4055, 4220, 4152, 4229, 4348, 4232, 4143, 4002,
    4235, 4431, 4226, 4432, 4430, 4433, 4108, 4215, NONE, 4100, 4256, 4118, 4035, 4093, 4212, 4238,
    NONE, 4449, 4292, NONE, 4269, 4310, NONE, 4312, 4203, 4141, 4219, 4050, NONE, 4049, NONE, 4047,
    NONE, 4080, NONE, 4105, 4171, 4132, 4065, 4020, 4208, 4064, 4096, 4353, 4191, NONE, 4186, NONE,
    4076, 4077, 4151, 4172, 4173, 4222, 4078, 4024, NONE, 4227, 4032, 4112, 4128, 4285, 4284, 4329,
    4286, 4245, 4242, 4243, NONE, NONE, 4241, 4244, 4426, 4427, 4425, 4054, 4101, 4110, 4315, 4314,
    4117, 4347, NONE, 4311, 4282, 4037, 4445, 4444, 4446, 4016, NONE, 4228, 4009, 4296, 4174, 4230,
    4231, 4053, 4247, 4234, 4019, 4225, 4107, 4214, 4218, 4268, 4358, 4354, 4447, 4287, 4217, 4039,
    4289, 4014, 4290, 4154, 4359, 4156, 4090, 4210, 4123, 4021, 4442, 4429, 4308, 4125, 4056, 4276,
    4275, 4271, 4274, NONE, 4273, NONE, 4272, 4167, NONE, NONE, NONE, NONE, NONE, 4144, 4155, 4157,
    4091, 4339, 4166, NONE, 4189, 4034, NONE, NONE, NONE, NONE, NONE, 4005, 4340, 4428, 4288, 4437,
    4029, NONE, NONE, NONE, 4333, 4136, 4438, 4434, 4424, 4042, 4328, 4216, 4364, 4365, 4363, 4188,
    4302, NONE, 4192, NONE, 4330, 4361, 4338, 4440, 4448, 4345, 4346, 4044, 4098, 4301, NONE, 4026,
    4209, NONE, 4331, 4362, NONE, 4131, 4443, 4003, 4223, 4089, 4085, 4298, 4145, 4088, 4175, 4176,
    4335, NONE, 4177, 4251, 4233, 4038, 4295, 4351, 4281, 4253, 4040, NONE, 4194, 4196, 4195, 4198,
    4193, 4199, 4197, NONE, 4332, 4163, 4164, 4240, 4350, 4159, 4161, 4165, NONE, 4239, 4349, 4158,
    4160, 4162, 4352, NONE, NONE, NONE, NONE, NONE, NONE, NONE, 4178, 4207, 4237, 4343, 4179, 4180,
    4270, 4450, 4309, 4283, 4252, 4121, 4139, NONE, 4138, NONE, 4046, NONE, 4081, NONE, 4074, 4104,
    4344, 4057, 4097, 4071, NONE, 4190, NONE, 4185, NONE, 4070, NONE, 4075, 4066, 4181, 4079, 4023,
    NONE, 4224, 4068, NONE, NONE, NONE, NONE, 4182, 4067, 4206, 4048, 4317, 4324, 4073, 4126, 4119,
    4072, 4183, 4102, 4184, 4304, 4069, 4106, 4213, 4099, 4255, 4366, 4025, 4031, 4115, 4087, 4083,
    4297, 4036, 4305, 4342, 4279, 4000, 4135, 4116, 4103, 4149, 4306, 4266, 4013, 4257, 4261, 4260,
    4259, NONE, 4258, NONE, 4318, 4321, 4322, NONE, 4323, NONE, 4043, 4236, 4092, 4211, NONE, NONE,
    4058, 4060, 4022, 4052, 4122, 4010, 4294, 4303, 4086, 4357, 4062, 4030, 4316, NONE, 4267, NONE,
    4111, 4113, NONE, 4307, 4277, 4114, 4278, 4007, 4004, 4146,
];
