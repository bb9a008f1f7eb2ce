//! The pure capacity-packing core. See `src/core/README.md` for the problem in plain math.
