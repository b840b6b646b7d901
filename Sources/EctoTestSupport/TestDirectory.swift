import Foundation
import Glibc

/// A fresh private directory under /tmp (made by `mkdtemp`, mode 0700), removed by `cleanup()`.
///
/// It is not removed on deinit, because key files and configs handed out as plain paths outlive the
/// object; call `cleanup()` (e.g. in a `defer`). Set `ECTO_TEST_KEEP_DIRS=1` to keep every directory
/// for a post-mortem (the path is printed instead).
public final class TestDirectory: Sendable {
    /// Absolute path of the directory (short, so a unix socket path inside it stays under 108 bytes).
    public let path: String

    /// Creates `/tmp/<prefix>-XXXXXX`.
    public init(prefix: String = "ecto-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            mkdtemp(buffer.baseAddress!)
        }
        guard made != nil else { throw TestSupportError.system("mkdtemp(/tmp/\(prefix)-XXXXXX)") }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(path, 0o700)
    }

    /// The absolute path of `name` inside this directory.
    public func file(_ name: String) -> String {
        path + "/" + name
    }

    /// Creates a subdirectory (mode 0700 unless told otherwise) and returns its path.
    @discardableResult
    public func makeSubdirectory(_ name: String, mode: mode_t = 0o700) throws -> String {
        let sub = file(name)
        if mkdir(sub, mode) != 0 && Glibc.errno != EEXIST {
            throw TestSupportError.system("mkdir(\(sub))")
        }
        chmod(sub, mode)
        return sub
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    @discardableResult
    public func write(_ name: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        let target = file(name)
        try writeFile(target, contents, mode: mode)
        return target
    }

    /// Reads `name` inside the directory, or nil if it does not exist.
    public func read(_ name: String) -> String? {
        readFileString(file(name))
    }

    /// Removes the directory and everything in it (idempotent).
    public func cleanup() {
        if let keep = ProcessInfo.processInfo.environment["ECTO_TEST_KEEP_DIRS"], !keep.isEmpty, keep != "0" {
            print("EctoTestSupport: keeping \(path)")
            return
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}
