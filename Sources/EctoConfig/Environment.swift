#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What is at a path (symbolic links followed).
public enum FileKind: Sendable, Equatable {
    case missing
    case regular
    case directory
    case other
}

/// Everything the loader needs from the outside world; tests inject their own.
public struct ConfigEnvironment: Sendable {
    /// Home directory, used for `~` and `~/.ssh/config`.
    public var home: String
    /// Local login name: the default SSH user and `%u` in `~/.ssh/config`.
    public var user: String
    /// Environment variables (`XDG_CONFIG_HOME`, `CREDENTIALS_DIRECTORY`).
    public var variables: [String: String]
    public var fileExists: @Sendable (String) -> FileKind
    /// Used for `~/.ssh/config` and files it includes.
    public var readFile: @Sendable (String) -> String?
    /// Names in a directory (for `Include` globs); nil if it cannot be listed.
    public var listDirectory: @Sendable (String) -> [String]?
    /// Whether a single-label host name (an `ssh_host` alias without a `HostName`) resolves.
    public var resolveHost: @Sendable (String) -> Bool
    /// The raw bytes of a file (for the config file itself, so invalid UTF-8 can be reported by line).
    public var readBytes: @Sendable (String) -> [UInt8]?
    /// Permission bits and owner of a file (symbolic links followed); nil when unknown (tests
    /// that do not care). Used to judge private keys as ssh would.
    public var fileOwnerAndMode: @Sendable (String) -> (uid: UInt32, mode: UInt32)?
    /// The uid the daemon runs as (key files must be ours or root's).
    public var uid: UInt32 = 0
    /// Judge identity files as the daemon will use them (mode, owner, format, key type,
    /// encryption; see `IdentityCheck`) and report problems as errors. `check`, `connect` and
    /// `install` turn this on; the daemon does not (a key's problem then fails only its tunnel,
    /// at connect time, and may be fixed without a reload).
    public var judgeKeyFiles = false
    /// With `judgeKeyFiles`: decrypts a private key file's bytes with a passphrase (nil: none
    /// configured) and returns the problem, or nil when the key is usable. Set by callers that
    /// link the key code (EctoSSH); without it, encryption is judged without decrypting.
    public var keyVerifier: (@Sendable (_ key: [UInt8], _ passphrase: [UInt8]?) -> String?)?

    /// - Parameters:
    ///   - listDirectory: default: no directory can be listed.
    ///   - resolveHost: default: no name resolves (keeps tests off the network).
    ///   - readBytes: default: the UTF-8 of `readFile`.
    public init(
        home: String,
        user: String,
        variables: [String: String] = [:],
        fileExists: @escaping @Sendable (String) -> FileKind,
        readFile: @escaping @Sendable (String) -> String?,
        listDirectory: (@Sendable (String) -> [String]?)? = nil,
        resolveHost: (@Sendable (String) -> Bool)? = nil,
        readBytes: (@Sendable (String) -> [UInt8]?)? = nil,
        fileOwnerAndMode: (@Sendable (String) -> (uid: UInt32, mode: UInt32)?)? = nil
    ) {
        self.home = home
        self.user = user
        self.variables = variables
        self.fileExists = fileExists
        self.readFile = readFile
        self.listDirectory = listDirectory ?? { _ in nil }
        self.resolveHost = resolveHost ?? { _ in false }
        self.readBytes = readBytes ?? { path in readFile(path).map { Array($0.utf8) } }
        self.fileOwnerAndMode = fileOwnerAndMode ?? { _ in nil }
    }

    /// The real process: `$HOME` (else the passwd entry), `$USER` (else the login name), the process
    /// environment, the real file system and the system resolver.
    public static var current: ConfigEnvironment {
        let env = ProcessInfo.processInfo.environment
        let pw = getpwuid(getuid())
        var home = env["HOME"] ?? ""
        if home.isEmpty, let pw, let dir = pw.pointee.pw_dir { home = String(cString: dir) }
        var user = env["USER"] ?? ""
        if user.isEmpty, let pw, let name = pw.pointee.pw_name { user = String(cString: name) }
        var environment = ConfigEnvironment(
            home: home,
            user: user,
            variables: env,
            fileExists: { path in
                var st = stat()
                guard stat(path, &st) == 0 else { return .missing }
                switch st.st_mode & S_IFMT {
                case S_IFREG: return .regular
                case S_IFDIR: return .directory
                default: return .other
                }
            },
            readFile: { path in
                guard let data = FileManager.default.contents(atPath: path) else { return nil }
                return String(decoding: data, as: UTF8.self)
            },
            listDirectory: { path in
                try? FileManager.default.contentsOfDirectory(atPath: path)
            },
            resolveHost: { name in
                var hints = addrinfo()
                hints.ai_family = AF_UNSPEC
                #if canImport(Glibc)
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                #else
                hints.ai_socktype = SOCK_STREAM
                #endif
                var result: UnsafeMutablePointer<addrinfo>?
                let rc = getaddrinfo(name, nil, &hints, &result)
                if let result { freeaddrinfo(result) }
                return rc == 0
            },
            readBytes: { path in
                guard let data = FileManager.default.contents(atPath: path) else { return nil }
                return [UInt8](data)
            },
            fileOwnerAndMode: { path in
                var st = stat()
                guard stat(path, &st) == 0 else { return nil }
                return (UInt32(st.st_uid), UInt32(st.st_mode & 0o7777))
            }
        )
        environment.uid = UInt32(getuid())
        return environment
    }
}
