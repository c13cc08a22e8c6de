// SPDX-License-Identifier: GPL-2.0

//! The VFIO migration v2 device states (`enum vfio_device_mig_state` in
//! `<linux/vfio.h>`) and what each means for mblit (docs/migration.md §3).
//!
//! The VFIO core's `vfio_mig_get_next_state()` decides the path between
//! two states; the driver executes one arc at a time and asks this module
//! what the device may do in the state it reached.

/// A v2 migration state, with the uAPI's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigState {
    /// `VFIO_DEVICE_STATE_ERROR`.
    Error = 0,
    /// `VFIO_DEVICE_STATE_STOP`.
    Stop = 1,
    /// `VFIO_DEVICE_STATE_RUNNING`.
    Running = 2,
    /// `VFIO_DEVICE_STATE_STOP_COPY`.
    StopCopy = 3,
    /// `VFIO_DEVICE_STATE_RESUMING`.
    Resuming = 4,
    /// `VFIO_DEVICE_STATE_RUNNING_P2P`.
    RunningP2p = 5,
    /// `VFIO_DEVICE_STATE_PRE_COPY`.
    PreCopy = 6,
    /// `VFIO_DEVICE_STATE_PRE_COPY_P2P`.
    PreCopyP2p = 7,
}

impl MigState {
    /// The state with uAPI value `v`.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Error,
            1 => Self::Stop,
            2 => Self::Running,
            3 => Self::StopCopy,
            4 => Self::Resuming,
            5 => Self::RunningP2p,
            6 => Self::PreCopy,
            7 => Self::PreCopyP2p,
            _ => return None,
        })
    }

    /// The uAPI value.
    pub const fn value(self) -> u32 {
        self as u32
    }

    /// Whether the engine may fetch new commands: only in the fully
    /// running states. In the P2P states the device accepts MMIO but
    /// starts no new work (the command in progress finishes).
    pub const fn engine_runs(self) -> bool {
        matches!(self, Self::Running | Self::PreCopy)
    }

    /// Whether BAR0/BAR2 writes are accepted (else `EBUSY`): everywhere
    /// but the states in which the device state must not change.
    pub const fn mmio_writable(self) -> bool {
        matches!(
            self,
            Self::Running | Self::PreCopy | Self::RunningP2p | Self::PreCopyP2p
        )
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const ALL: [MigState; 8] = [
        MigState::Error,
        MigState::Stop,
        MigState::Running,
        MigState::StopCopy,
        MigState::Resuming,
        MigState::RunningP2p,
        MigState::PreCopy,
        MigState::PreCopyP2p,
    ];

    #[test]
    fn values_round_trip_and_match_the_uapi() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(s.value(), i as u32);
            assert_eq!(MigState::from_u32(i as u32), Some(*s));
        }
        assert_eq!(MigState::from_u32(8), None);
        assert_eq!(MigState::from_u32(u32::MAX), None);
    }

    #[test]
    fn what_each_state_allows() {
        let runs: std::vec::Vec<_> = ALL.iter().filter(|s| s.engine_runs()).collect();
        assert_eq!(runs, [&MigState::Running, &MigState::PreCopy]);
        for s in ALL {
            // Work only runs where MMIO is accepted too.
            assert!(!s.engine_runs() || s.mmio_writable());
        }
        assert!(!MigState::Stop.mmio_writable());
        assert!(!MigState::StopCopy.mmio_writable());
        assert!(!MigState::Resuming.mmio_writable());
        assert!(!MigState::Error.mmio_writable());
        assert!(MigState::RunningP2p.mmio_writable());
    }
}
