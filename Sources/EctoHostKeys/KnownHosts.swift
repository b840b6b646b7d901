import EctoPlatform

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The outcome of checking a server's host key against a known_hosts file.
public enum KnownHostsResult: Sendable, Equatable {
    /// A plain (unmarked) line for this host holds exactly this key.
    case match(line: Int)
    /// An `@revoked` line holds this key (whatever its host patterns): must be refused.
    case revoked(line: Int)
    /// The host is known, but not with this key: every plain line for the host,
    /// in file order. `sameAlgorithm` marks the ones ssh would report as
    /// "host key for X has changed"; if none is set, only other key types are known.
    case mismatch(known: [KnownKey])
    /// No plain line matches the host.
    case notFound
}

/// A key recorded for a host, reported with a mismatch.
public struct KnownKey: Sendable, Equatable {
    public var line: Int
    public var key: HostKey
    /// Whether the recorded key has the same type as the offered key.
    public var sameAlgorithm: Bool

    public init(line: Int, key: HostKey, sameAlgorithm: Bool) {
        self.line = line
        self.key = key
        self.sameAlgorithm = sameAlgorithm
    }
}

/// An OpenSSH known_hosts file, parsed with the matching semantics of ssh(1) /
/// sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT".
public struct KnownHostsFile: Sendable {
    public struct Entry: Sendable, Equatable {
        /// 1-based line number in the file.
        public var line: Int
        public var marker: Marker?
        /// The host field as written: comma-separated patterns, or one `|1|salt|hash`.
        public var hostPatterns: String
        public var key: HostKey
        public var comment: String?

        public init(line: Int, marker: Marker?, hostPatterns: String, key: HostKey, comment: String?) {
            self.line = line
            self.marker = marker
            self.hostPatterns = hostPatterns
            self.key = key
            self.comment = comment
        }
    }

    public enum Marker: Sendable, Hashable {
        case revoked
        case certAuthority
    }

    public var path: String
    public var entries: [Entry]
    /// "path:line: …" for each line skipped as malformed (never fatal; ssh skips them too).
    public var warnings: [String]

    public init(path: String, entries: [Entry] = [], warnings: [String] = []) {
        self.path = path
        self.entries = entries
        self.warnings = warnings
    }

    // MARK: - Parsing

    public static func parse(_ text: String, path: String) -> KnownHostsFile {
        parse(bytes: Array(text.utf8), path: path)
    }

    static func parse(bytes: [UInt8], path: String) -> KnownHostsFile {
        var file = KnownHostsFile(path: path)
        var lineNumber = 0
        for rawLine in bytes.split(separator: 0x0a, omittingEmptySubsequences: false) {
            lineNumber += 1
            switch parseLine(rawLine) {
            case .skip:
                continue
            case .entry(let marker, let hosts, let key, let comment):
                file.entries.append(
                    Entry(line: lineNumber, marker: marker, hostPatterns: hosts, key: key, comment: comment))
            case .malformed(let why):
                file.warnings.append("\(path):\(lineNumber): \(why)")
            }
        }
        return file
    }

    /// Reads and parses the file. A missing file gives an empty result (the
    /// caller decides whether that is an error); other read errors throw.
    public static func load(path: String) throws(HostKeyError) -> KnownHostsFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            if err == ENOENT { return KnownHostsFile(path: path) }
            throw HostKeyError("cannot open \(path): \(errorText(err))")
        }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n: Int
            do {
                n = try Syscall.blocking("read") { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            } catch {
                throw HostKeyError("cannot read \(path): \(errorText(error.code))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return parse(bytes: bytes, path: path)
    }

    private enum ParsedLine {
        case skip
        case entry(Marker?, String, HostKey, String?)
        case malformed(String)
    }

    private static func parseLine(_ raw: ArraySlice<UInt8>) -> ParsedLine {
        var line = raw
        if line.last == 0x0d { line.removeLast() }  // tolerate CRLF files
        let end = line.endIndex
        var i = line.startIndex
        func skipBlanks() { while i < end, isBlank(line[i]) { i += 1 } }
        func token() -> ArraySlice<UInt8> {
            let start = i
            while i < end, !isBlank(line[i]) { i += 1 }
            return line[start..<i]
        }

        skipBlanks()
        if i == end || line[i] == UInt8(ascii: "#") { return .skip }

        var marker: Marker?
        while i < end, line[i] == UInt8(ascii: "@") {
            if marker != nil { return .malformed("more than one marker") }
            let word = token()
            switch text(word) {
            case "@revoked": marker = .revoked
            case "@cert-authority": marker = .certAuthority
            default: return .malformed("invalid marker \"\(text(word))\"")
            }
            skipBlanks()
        }

        let hosts = token()
        if hosts.isEmpty { return .malformed("missing host patterns") }
        skipBlanks()
        if i == end || line[i] == UInt8(ascii: "#") { return .malformed("missing key type after host patterns") }
        if hosts.first == UInt8(ascii: "|"), HashedHost(hosts) == nil {
            return .malformed("bad host hash \"\(text(hosts.prefix(40)))\"")
        }

        let typeToken = text(token())
        skipBlanks()
        let keyToken = token()
        skipBlanks()
        let rest = trimSpace(line[i..<end])

        guard openSSHKeyTypes.contains(typeToken) || typeToken.hasPrefix("rsa-sha2-") else {
            return .malformed("unknown key type \"\(typeToken)\"")
        }
        if keyToken.isEmpty { return .malformed("missing key after key type \(typeToken)") }
        guard let blob = Base64.decode(keyToken) else { return .malformed("key is not valid base64") }
        let key: HostKey
        do {
            key = try HostKey(blob: blob)
        } catch {
            return .malformed("invalid key: \(error.message)")
        }
        guard keyTypeName(typeToken, isCompatibleWith: key.algorithm) else {
            return .malformed("key type \"\(typeToken)\" does not match the key (\(key.algorithm))")
        }
        guard openSSHKeyTypes.contains(key.algorithm) else {
            return .malformed("unknown key type \"\(key.algorithm)\"")
        }
        return .entry(marker, text(hosts), key, rest.isEmpty ? nil : text(rest))
    }

    // MARK: - Lookup

    /// Host lookup name as ssh forms it (`put_host_port`): the host, lowercased,
    /// for port 22 (or 0, meaning "no port", as with HostKeyAlias); "[host]:port" otherwise.
    public static func lookupName(host: String, port: Int) -> String {
        let lower = asciiLowercased(host)
        if port == 0 || port == 22 { return lower }
        return "[\(lower)]:\(port)"
    }

    /// Every entry whose host field matches the lookup name, whatever its marker,
    /// in file order (what `ssh-keygen -F` lists, minus lines with an invalid key).
    public func entries(forHost host: String, port: Int) -> [Entry] {
        let name = Array(Self.lookupName(host: host, port: port).utf8)
        return entries.filter { Self.hostField($0.hostPatterns, matches: name) }
    }

    public func check(host: String, port: Int, key: HostKey) -> KnownHostsResult {
        if let revoked = entries.first(where: { $0.marker == .revoked && $0.key == key }) {
            return .revoked(line: revoked.line)
        }
        let known = entries(forHost: host, port: port).filter { $0.marker == nil }
        if let hit = known.first(where: { $0.key == key }) {
            return .match(line: hit.line)
        }
        if known.isEmpty { return .notFound }
        return .mismatch(
            known: known.map {
                KnownKey(line: $0.line, key: $0.key, sameAlgorithm: $0.key.algorithm == key.algorithm)
            })
    }

    /// Key types recorded for this host on plain lines (blob type names, so
    /// "ssh-rsa" stands for rsa-sha2-256/512 as well), in file order, deduplicated.
    public func knownAlgorithms(host: String, port: Int) -> [String] {
        var seen = Set<String>()
        var result = [String]()
        for entry in entries(forHost: host, port: port) where entry.marker == nil {
            if seen.insert(entry.key.algorithm).inserted { result.append(entry.key.algorithm) }
        }
        return result
    }

    /// Whether a host field (as written in the file) matches a lookup name.
    /// A field starting with "|" is one hashed name (`|1|salt|hash`); anything
    /// else is a comma-separated pattern list.
    public static func hostField(_ field: String, matches lookupName: String) -> Bool {
        hostField(field, matches: Array(lookupName.utf8))
    }

    static func hostField(_ field: String, matches name: [UInt8]) -> Bool {
        let patterns = Array(field.utf8)
        if patterns.first == UInt8(ascii: "|") {
            guard let hashed = HashedHost(patterns[...]) else { return false }
            return hashed.matches(name)
        }
        return matchPatternList(asciiLowercased(name), patterns) == 1
    }

    /// OpenSSH `match_pattern_list` with lowercasing: 1 if a positive pattern
    /// matches and no negated one does, -1 if a negated pattern matches, else 0.
    static func matchPatternList(_ string: [UInt8], _ list: [UInt8]) -> Int {
        var gotPositive = false
        var i = 0
        while i < list.count {
            var negated = false
            if list[i] == UInt8(ascii: "!") {
                negated = true
                i += 1
            }
            let start = i
            while i < list.count, list[i] != UInt8(ascii: ",") { i += 1 }
            let sub = list[start..<i]
            if sub.count >= 1023 { return 0 }  // ssh: over-long subpattern fails the whole list
            if i < list.count { i += 1 }  // skip the comma
            if globMatch(string, asciiLowercased(sub)) {
                if negated { return -1 }
                gotPositive = true
            }
        }
        return gotPositive ? 1 : 0
    }

    /// `*` matches any run of bytes (including none), `?` exactly one byte;
    /// every other byte matches itself.
    static func globMatch(_ string: [UInt8], _ pattern: [UInt8]) -> Bool {
        let star = UInt8(ascii: "*"), question = UInt8(ascii: "?")
        var s = 0, p = 0
        var starAt = -1, resumeAt = 0
        while s < string.count {
            if p < pattern.count, pattern[p] == question || pattern[p] == string[s] {
                s += 1
                p += 1
            } else if p < pattern.count, pattern[p] == star {
                starAt = p
                resumeAt = s
                p += 1
            } else if starAt >= 0 {
                resumeAt += 1
                s = resumeAt
                p = starAt + 1
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == star { p += 1 }
        return p == pattern.count
    }

    // MARK: - Adding hosts

    /// The line to append for a new host (plain, not hashed), e.g.
    /// "[127.0.0.1]:2222 ssh-ed25519 AAAA…".
    public static func line(host: String, port: Int, key: HostKey) -> String {
        "\(lookupName(host: host, port: port)) \(key.openSSHLine)"
    }

    /// Appends `line(host:port:key:)` to the file, creating it (0600) and missing
    /// directories (0700) if needed. Existing content is kept; a newline is added
    /// first if the file does not end with one. Holds an exclusive flock while
    /// appending, and fsyncs the file (and its directory when the file is new).
    public static func append(host: String, port: Int, key: HostKey, to path: String) throws(HostKeyError) {
        let directory = parentDirectory(of: path)
        try makeDirectories(directory)

        var st = stat()
        let existed = stat(path, &st) == 0
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 { throw HostKeyError("cannot open \(path) for appending: \(errorText(errno))") }
        defer { close(fd) }
        do {
            _ = try Syscall.blocking("flock") { flock(fd, LOCK_EX) }
        } catch {
            throw HostKeyError("cannot lock \(path): \(errorText(error.code))")
        }

        guard fstat(fd, &st) == 0 else { throw HostKeyError("cannot stat \(path): \(errorText(errno))") }
        var needsNewline = false
        if st.st_size > 0 {
            var last: UInt8 = 0
            let n = pread(fd, &last, 1, st.st_size - 1)
            if n != 1 { throw HostKeyError("cannot read \(path): \(errorText(errno))") }
            needsNewline = last != 0x0a
        }

        var data = [UInt8]()
        if needsNewline { data.append(0x0a) }
        data.append(contentsOf: line(host: host, port: port, key: key).utf8)
        data.append(0x0a)
        var written = 0
        while written < data.count {
            do {
                written += try Syscall.blocking("write") {
                    data.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
                }
            } catch {
                throw HostKeyError("cannot write \(path): \(errorText(error.code))")
            }
        }
        if fsync(fd) != 0 { throw HostKeyError("cannot fsync \(path): \(errorText(errno))") }
        if !existed {
            let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
            if dfd >= 0 {
                _ = fsync(dfd)
                close(dfd)
            }
        }
    }

    private static func parentDirectory(of path: String) -> String {
        var bytes = Array(path.utf8)
        while bytes.count > 1, bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "" }
        var dir = Array(bytes[..<slash])
        while dir.count > 1, dir.last == UInt8(ascii: "/") { dir.removeLast() }
        return slash == 0 ? "/" : String(decoding: dir, as: UTF8.self)
    }

    /// mkdir -p with mode 0700 for each directory created.
    private static func makeDirectories(_ directory: String) throws(HostKeyError) {
        if directory.isEmpty || directory == "/" { return }
        var st = stat()
        if stat(directory, &st) == 0 {
            if st.st_mode & S_IFMT != S_IFDIR { throw HostKeyError("\(directory) is not a directory") }
            return
        }
        try makeDirectories(parentDirectory(of: directory))
        if mkdir(directory, 0o700) != 0 {
            let err = errno
            if err != EEXIST { throw HostKeyError("cannot create directory \(directory): \(errorText(err))") }
        }
    }
}

/// A hashed host field, `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
struct HashedHost {
    let field: [UInt8]
    let salt: [UInt8]

    /// Nil unless the field has the magic "|1|", a base64 salt of exactly 20
    /// bytes, and a further "|" (as OpenSSH's `extract_salt` requires).
    init?(_ field: ArraySlice<UInt8>) {
        let bar = UInt8(ascii: "|")
        guard field.count > 3, field.starts(with: [bar, UInt8(ascii: "1"), bar]) else { return nil }
        let saltStart = field.startIndex + 3
        guard let saltEnd = field[saltStart...].firstIndex(of: bar), saltEnd > saltStart,
            saltEnd - saltStart <= 1024,
            let salt = Base64.decode(field[saltStart..<saltEnd]), salt.count == 20
        else { return nil }
        self.field = Array(field)
        self.salt = salt
    }

    /// Recomputes the field for `name` and compares the text, as ssh does.
    func matches(_ name: [UInt8]) -> Bool {
        let mac = Digest.hmacSHA1(key: salt, message: name)
        let expected = "|1|" + Base64.encode(salt) + "|" + Base64.encode(mac)
        return Array(expected.utf8) == field
    }
}

@inline(__always)
private func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

private func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

private func asciiLowercased(_ bytes: some Collection<UInt8>) -> [UInt8] {
    bytes.map { $0 >= 0x41 && $0 <= 0x5a ? $0 + 0x20 : $0 }
}

private func asciiLowercased(_ string: String) -> String {
    String(decoding: asciiLowercased(string.utf8), as: UTF8.self)
}

private func errorText(_ err: Int32) -> String {
    String(cString: strerror(err))
}
