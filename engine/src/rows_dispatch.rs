//! Kernels unrolled per row count: a const generic `R` rows per pass, chosen at run time.

/// `kernel::<R>(args)` with `R` the run-time `rows` as a constant: one arm per listed count, the
/// last count for any other value (callers pass at most that many).
macro_rules! with_rows {
    ($rows:expr, [$($r:literal),*], $last:literal, $kernel:ident $args:tt) => {
        match $rows {
            $($r => $kernel::<$r> $args,)*
            _ => $kernel::<$last> $args,
        }
    };
}

pub(crate) use with_rows;
