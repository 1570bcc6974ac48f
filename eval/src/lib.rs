//! scot-eval (work in progress)
