//! Which CPU each UDP worker thread runs on. With one worker per CPU the server pins worker `i`
//! to the `i`-th CPU it may use (as Knot does with its UDP workers, and NSD with
//! `cpu-affinity`): a worker then keeps its caches warm and is never migrated onto the CPU where
//! its sibling runs. With more or fewer workers than CPUs the scheduler places them.

/// The CPUs this process may run on (its affinity mask), in ascending order; empty when the
/// mask cannot be read (then nothing is pinned).
pub(crate) fn allowed() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// The CPU for each of `threads` workers when there is exactly one worker per allowed CPU
/// (and more than one CPU), else `None` (no pinning).
pub(crate) fn plan(threads: usize, allowed: &[usize]) -> Option<Vec<usize>> {
    (allowed.len() > 1 && threads == allowed.len()).then(|| allowed.to_vec())
}

/// Pins the calling thread to `cpu`; failure (a CPU taken away meanwhile) leaves it unpinned.
pub(crate) fn pin_current(cpu: usize) {
    #[cfg(target_os = "linux")]
    {
        if cpu >= libc::CPU_SETSIZE as usize {
            return;
        }
        // SAFETY: as above; the set is a valid, initialised cpu_set_t.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut set) };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
            tracing::debug!(cpu, "could not pin a DNS UDP worker: {}", std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_cpu_is_pinned_anything_else_is_not() {
        assert_eq!(plan(2, &[0, 1]), Some(vec![0, 1]));
        assert_eq!(plan(3, &[1, 4, 7]), Some(vec![1, 4, 7]));
        assert_eq!(plan(4, &[0, 1]), None);
        assert_eq!(plan(1, &[0, 1]), None);
        assert_eq!(plan(1, &[0]), None);
        assert_eq!(plan(2, &[]), None);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        if cfg!(target_os = "linux") {
            let cpus = allowed();
            assert!(!cpus.is_empty());
            assert!(cpus.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
