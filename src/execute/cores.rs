//! How many stages train at once, and with how many threads each, on the cores this process
//! may use. LibTorch runs about ten times slower when its OpenMP threads outnumber the free
//! cores (154 against 1,759 images/s for the seed CNN with 2 threads on 2 busy cores), so
//! `--jobs` × `--threads` above the cores is cut back unless the user insists; threads are
//! never changed behind the user's back, since LibTorch stage ids name them. flex is not
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

/// Stages at once for LibTorch on the CPU, and why fewer than asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Stages trained at once.
    pub jobs: usize,
    /// What was changed, or what runs oversubscribed, and why.
    pub warning: Option<String>,
}

/// How many of `jobs` stages of `threads` threads each fit on `cores`: the threads are kept
/// (they are part of a LibTorch stage's id, its numbers depend on them), the jobs are cut to
/// what fits unless `oversubscribe`. `set` says whether the user chose the threads (else they
/// are every core, and the warning says which `--threads` would run the jobs side by side).
pub fn split(jobs: usize, threads: usize, set: bool, cores: usize, oversubscribe: bool) -> Split {
    let (cores, jobs, threads) = (cores.max(1), jobs.max(1), threads.max(1));
    let wanted = jobs * threads;
    if wanted <= cores {
        return Split {
            jobs,
            warning: None,
        };
    }
    let trap = format!(
        "{jobs} job{} × {threads} thread{} = {wanted} LibTorch threads on {cores} cores: with more \
         threads than free cores LibTorch runs about 10x slower",
        plural(jobs),
        plural(threads)
    );
    if oversubscribe {
        return Split {
            jobs,
            warning: Some(format!("{trap}; running so anyway (--oversubscribe)")),
        };
    }
    let fit = (cores / threads).max(1);
    let mut warning = trap;
    if fit < jobs {
        warning.push_str(&format!(
            "; running {fit} job{} at a time instead (--oversubscribe keeps {jobs})",
            plural(fit)
        ));
    }
    // Other threads give other numbers and stage ids: the user's call, never made silently.
    let side_by_side = (cores / jobs).max(1);
    if !set && jobs > 1 && side_by_side < threads {
        warning.push_str(&format!(
            "; --threads {side_by_side} would run {} at once (stage ids name their threads)",
            jobs.min(cores)
        ));
    } else if threads > cores {
        warning.push_str(&format!(
            "; even alone a stage's {threads} threads exceed the {cores} cores: pass --threads \
             {cores} (stage ids name their threads)"
        ));
    }
    Split {
        jobs: fit,
        warning: Some(warning),
    }
}

/// Stages that fit side by side when each has `threads` threads (`--jobs auto` on LibTorch).
pub fn fitting(threads: usize, cores: usize) -> usize {
    (cores.max(1) / threads.max(1)).max(1)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_times_threads_never_exceeds_the_cores_unless_asked() {
        // The trap of the issue: 2 jobs of 2 threads on 2 cores runs 1 job at a time.
        let s = split(2, 2, true, 2, false);
        assert_eq!(s.jobs, 1);
        let w = s.warning.unwrap();
        assert!(
            w.contains("2 jobs × 2 threads = 4 LibTorch threads on 2 cores"),
            "{w}"
        );
        assert!(
            w.contains("running 1 job at a time instead (--oversubscribe keeps 2)"),
            "{w}"
        );
        // Threads left at every core: the same cut, and the threads that would fit are named.
        let w = split(2, 2, false, 2, false).warning.unwrap();
        assert!(w.contains("--threads 1 would run 2 at once"), "{w}");
        // Asked for: kept, with the warning.
        let s = split(2, 2, true, 2, true);
        assert_eq!(s.jobs, 2);
        assert!(
            s.warning
                .unwrap()
                .contains("running so anyway (--oversubscribe)")
        );
        // A stage wider than the machine is named; one job is not "cut" to one.
        let w = split(1, 4, true, 2, false).warning.unwrap();
        assert!(
            w.contains("pass --threads 2") && !w.contains("instead"),
            "{w}"
        );
        // A split that fits is left alone.
        assert_eq!(
            split(2, 4, true, 8, false),
            Split {
                jobs: 2,
                warning: None
            }
        );
        assert_eq!(split(1, 8, false, 8, false).warning, None);
        assert_eq!((fitting(2, 2), fitting(1, 16), fitting(4, 2)), (1, 16, 1));
    }
}
