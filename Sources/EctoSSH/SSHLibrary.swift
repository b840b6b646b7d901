import CLibSSH2

/// Process-wide libssh2 initialisation: `libssh2_init` once, before the first session, and
/// `libssh2_exit` once, when the process is done with SSH.
public enum SSHLibrary {
    /// Swift runs a global's initialiser exactly once, thread-safely: this is the `libssh2_init` call.
    private static let initialized: Bool = {
        libssh2_init(0) == 0
    }()

    /// Initialises libssh2 (idempotent). Returns false when libssh2 could not initialise its crypto backend.
    @discardableResult
    public static func initialize() -> Bool { initialized }

    /// Releases libssh2's global state. Call once, at process exit, after every session is freed.
    public static func shutdown() {
        if initialized { libssh2_exit() }
    }

    /// True when the libssh2 we were built against (1.11 and later) signs RSA keys with
    /// rsa-sha2-256/512 itself; then its own key-file and agent paths are used for RSA keys.
    public static var signsRSASHA2: Bool { ecto_libssh2_signs_rsa_sha2() != 0 }

    /// The runtime libssh2 version, e.g. "1.10.0".
    public static var version: String {
        guard let cString = libssh2_version(0) else { return "unknown" }
        return String(cString: cString)
    }
}
