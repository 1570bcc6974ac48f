//! scot-engine (work in progress)
