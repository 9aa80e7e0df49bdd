//! How many stages train at once, and with how many threads each, on the cores this process
//! may use. LibTorch runs about ten times slower when its OpenMP threads outnumber the free
//! cores (154 against 1,759 images/s for the seed CNN with 2 threads on 2 busy cores), so
//! `--jobs` × `--threads` above the cores is cut back unless the user insists. flex is not
//! split: its stages share one rayon pool of the backend's threads, whatever `--jobs` is.

use std::num::NonZeroUsize;

/// Cores this process may use: the affinity mask and cgroup quota (what the standard library
/// reports), capped by `SLURM_CPUS_PER_TASK` inside a Slurm task.
pub fn available() -> usize {
    let own = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let slurm = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    slurm.map_or(own, |s| s.min(own))
}

/// Stages at once and threads per stage for LibTorch on the CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Stages trained at once.
    pub jobs: usize,
    /// Intra-op threads per stage (`None`: every core, with one job).
    pub threads: Option<usize>,
    /// What was changed, or what runs oversubscribed, and why.
    pub warning: Option<String>,
}

/// The split of `cores` between `jobs` stages of `threads` threads each (`None`: not set):
/// unset threads become `cores / jobs`; set ones are kept (they are part of a LibTorch stage's
/// id, its numbers depend on them) and the jobs cut to what fits, unless `oversubscribe`.
pub fn split(jobs: usize, threads: Option<usize>, cores: usize, oversubscribe: bool) -> Split {
    let cores = cores.max(1);
    let jobs = jobs.max(1);
    let threads = match threads {
        None if jobs == 1 => {
            return Split {
                jobs,
                threads: None,
                warning: None,
            };
        }
        None => (cores / jobs).max(1),
        Some(t) => t.max(1),
    };
    let wanted = jobs * threads;
    if wanted <= cores {
        return Split {
            jobs,
            threads: Some(threads),
            warning: None,
        };
    }
    let trap = format!(
        "{jobs} jobs × {threads} threads = {wanted} LibTorch threads on {cores} cores: with more \
         threads than free cores LibTorch runs about 10x slower"
    );
    if oversubscribe {
        return Split {
            jobs,
            threads: Some(threads),
            warning: Some(format!("{trap}; running so anyway (--oversubscribe)")),
        };
    }
    let fit = (cores / threads).max(1);
    // One stage alone may still have more threads than cores: only --threads can fix that, and
    // it changes the stage ids, so it is the user's call.
    let still = if threads > cores {
        format!(
            "; even alone a stage's {threads} threads exceed the {cores} cores: pass --threads {cores}"
        )
    } else {
        String::new()
    };
    Split {
        jobs: fit,
        threads: Some(threads),
        warning: Some(format!(
            "{trap}; running {fit} job{} of {threads} thread{} at a time instead \
             (--oversubscribe keeps {jobs}){still}",
            if fit == 1 { "" } else { "s" },
            if threads == 1 { "" } else { "s" },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_times_threads_never_exceeds_the_cores_unless_asked() {
        // The trap of the issue: 2 jobs of 2 threads on 2 cores runs 1 job at a time.
        let s = split(2, Some(2), 2, false);
        assert_eq!((s.jobs, s.threads), (1, Some(2)));
        assert!(s.warning.unwrap().contains("4 LibTorch threads on 2 cores"));
        // Unset threads share the cores among the jobs.
        assert_eq!(
            split(2, None, 2, false),
            Split {
                jobs: 2,
                threads: Some(1),
                warning: None
            }
        );
        assert_eq!(split(3, None, 16, false).threads, Some(5));
        // One job keeps every core.
        assert_eq!(split(1, None, 8, false).threads, None);
        // More jobs than cores: one thread each, as many jobs as cores.
        let s = split(4, None, 2, false);
        assert_eq!((s.jobs, s.threads), (2, Some(1)));
        // Asked for: kept, with the warning.
        let s = split(2, Some(2), 2, true);
        assert_eq!((s.jobs, s.threads), (2, Some(2)));
        assert!(s.warning.unwrap().contains("--oversubscribe"));
        // A stage wider than the machine is named.
        let s = split(2, Some(4), 2, false);
        assert!(s.warning.unwrap().contains("pass --threads 2"));
        // A split that fits is left alone.
        assert_eq!(split(2, Some(4), 8, false).warning, None);
    }
}
