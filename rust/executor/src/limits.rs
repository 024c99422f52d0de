//! Resource limits of one execution, validated once on the host before any job runs.

use crate::error::{ExecError, Result};

/// Limits applied to every execution. Mirrors `azr.executor.Limits`; see there for the docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub wall_timeout_s: f64,
    pub cpu_time_s: f64,
    pub memory_bytes: u64,
    pub max_output_bytes: usize,
    pub max_value_bytes: usize,
    pub max_source_bytes: usize,
    pub recursion_limit: u32,
    pub int_max_str_digits: u32,
    pub capture_stdout: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_timeout_s: 5.0,
            cpu_time_s: 5.0,
            memory_bytes: 512 << 20,
            max_output_bytes: 64 << 10,
            max_value_bytes: 256 << 10,
            max_source_bytes: 1 << 20,
            recursion_limit: 1000,
            int_max_str_digits: 4300,
            capture_stdout: true,
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ExecError::InvalidLimits(m.to_string()));
        if !(self.wall_timeout_s.is_finite()
            && self.wall_timeout_s > 0.0
            && self.wall_timeout_s <= 3600.0)
        {
            return bad("wall_timeout_s must be in (0, 3600]");
        }
        if !(self.cpu_time_s.is_finite() && self.cpu_time_s > 0.0 && self.cpu_time_s <= 3600.0) {
            return bad("cpu_time_s must be in (0, 3600]");
        }
        // Below ~64 MiB a forked interpreter cannot even finish its bookkeeping.
        if self.memory_bytes < (64 << 20) {
            return bad("memory_bytes must be at least 64 MiB");
        }
        if self.max_output_bytes > (64 << 20) {
            return bad("max_output_bytes must be at most 64 MiB");
        }
        if self.max_value_bytes < 64 || self.max_value_bytes > (64 << 20) {
            return bad("max_value_bytes must be in [64, 64 MiB]");
        }
        if self.max_source_bytes == 0 || self.max_source_bytes > (256 << 20) {
            return bad("max_source_bytes must be in [1, 256 MiB]");
        }
        if !(50..=1_000_000).contains(&self.recursion_limit) {
            return bad("recursion_limit must be in [50, 1000000]");
        }
        if self.int_max_str_digits != 0 && self.int_max_str_digits < 640 {
            // CPython's own floor; 0 disables the limit.
            return bad("int_max_str_digits must be 0 or at least 640");
        }
        Ok(())
    }

    /// Whole seconds for RLIMIT_CPU (the kernel counts in seconds), rounded up.
    pub fn cpu_rlimit_secs(&self) -> u64 {
        self.cpu_time_s.ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Limits::default().validate().unwrap();
    }

    #[test]
    fn rejects_out_of_range() {
        let cases = [
            Limits {
                wall_timeout_s: 0.0,
                ..Limits::default()
            },
            Limits {
                wall_timeout_s: f64::NAN,
                ..Limits::default()
            },
            Limits {
                cpu_time_s: -1.0,
                ..Limits::default()
            },
            Limits {
                memory_bytes: 1 << 20,
                ..Limits::default()
            },
            Limits {
                max_source_bytes: 0,
                ..Limits::default()
            },
            Limits {
                recursion_limit: 10,
                ..Limits::default()
            },
            Limits {
                int_max_str_digits: 5,
                ..Limits::default()
            },
        ];
        for l in cases {
            assert!(
                matches!(l.validate(), Err(ExecError::InvalidLimits(_))),
                "{l:?}"
            );
        }
    }

    #[test]
    fn cpu_rounds_up() {
        let l = Limits {
            cpu_time_s: 1.2,
            ..Limits::default()
        };
        assert_eq!(l.cpu_rlimit_secs(), 2);
        let l = Limits {
            cpu_time_s: 0.1,
            ..Limits::default()
        };
        assert_eq!(l.cpu_rlimit_secs(), 1);
    }
}
