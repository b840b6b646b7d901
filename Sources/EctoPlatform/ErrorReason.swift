#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file operation of FoundationEssentials (`FileManager`, `String(contentsOfFile:)`,
/// `Data.write`) failed, in one line: the system's message for the errno behind it ("No such file
/// or directory"), else the error as it describes itself. Replaces Foundation's
/// `localizedDescription`, which FoundationEssentials does not have.
public func reason(_ error: any Error) -> String {
    if let cocoa = error as? CocoaError, let posix = cocoa.underlying as? POSIXError {
        return String(cString: strerror(posix.code.rawValue))
    }
    if let posix = error as? POSIXError {
        return String(cString: strerror(posix.code.rawValue))
    }
    return "\(error)"
}
