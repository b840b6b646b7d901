import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Where the control socket lives.
public enum ControlPaths {
    /// `ECTO_TUNNEL_SOCKET`, else `$XDG_RUNTIME_DIR/ecto-tunnel/control.sock` (when absolute, `XDG`), else
    /// `/run/user/UID/ecto-tunnel/control.sock` when that runtime directory exists, else
    /// `/tmp/ecto-tunnel-UID/control.sock` (a directory we create 0700 and check we own).
    public static func defaultSocket(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit = environment["ECTO_TUNNEL_SOCKET"], !explicit.isEmpty { return explicit }
        if let runtime = XDG.runtimeDirectory(environment) {
            return runtime + "/ecto-tunnel/control.sock"
        }
        let uid = geteuid()
        var info = stat()
        if stat("/run/user/\(uid)", &info) == 0 && info.st_uid == uid {
            return "/run/user/\(uid)/ecto-tunnel/control.sock"
        }
        return "/tmp/ecto-tunnel-\(uid)/control.sock"
    }

    /// The longest path a Unix-domain socket address holds (sun_path minus the NUL).
    public static let maxSocketPathLength = 107
}
