import EctoPlatform

/// The syscall layer's one errno error type lives in EctoPlatform (`Syscall`); the tunnel core's
/// files name it without importing EctoPlatform each.
public typealias SystemError = EctoPlatform.SystemError
