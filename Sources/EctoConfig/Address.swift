/// Host/port parsing for `local`, `remote` and `target`.

/// Why an address could not be parsed. `message` is a short phrase such as `port must be 1-65535`.
public struct AddressError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public init(message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// A `host:port` pair. `host` is stored without brackets; it may be an IPv4 or IPv6 literal or a name.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `"127.0.0.1:80"`, `"[::1]:80"`, `"localhost:80"`. IPv6 literals must be in brackets.
    public static func parse(_ s: String) throws(AddressError) -> Endpoint {
        if s.isEmpty { throw AddressError("empty address (expected host:port)") }
        let (host, port) = try HostSyntax.splitHostPort(s, defaultPort: nil)
        guard let port else { throw AddressError("missing port (expected host:port)") }
        return Endpoint(host: host, port: port)
    }

    /// 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) or `localhost`.
    public var isLoopback: Bool { HostSyntax.isLoopback(host) }

    /// 0.0.0.0 or :: (any spelling).
    public var isWildcard: Bool { HostSyntax.isWildcard(host) }

    /// `host:port`, IPv6 hosts in brackets.
    public var description: String { "\(HostSyntax.bracketed(host)):\(port)" }
}

/// An SSH server: `[user@]host[:port]`.
public struct SSHTarget: Hashable, Sendable, CustomStringConvertible {
    public var user: String?
    public var host: String
    /// 22 unless given.
    public var port: UInt16

    public init(user: String? = nil, host: String, port: UInt16 = 22) {
        self.user = user
        self.host = host
        self.port = port
    }

    /// Parses `"host"`, `"user@host"`, `"host:2222"`, `"user@[::1]:2222"`, `"[::1]"`.
    public static func parse(_ s: String) throws(AddressError) -> SSHTarget {
        if s.isEmpty { throw AddressError("empty target (expected [user@]host[:port])") }
        var user: String?
        var rest = Substring(s)
        if let at = s.lastIndex(of: "@") {
            let u = String(s[..<at])
            if u.isEmpty { throw AddressError("empty user name before \"@\"") }
            if let bad = u.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
                throw AddressError("user name contains \(HostSyntax.describe(bad))")
            }
            user = u
            rest = s[s.index(after: at)...]
        }
        if rest.isEmpty { throw AddressError("missing host (expected [user@]host[:port])") }
        let (host, port) = try HostSyntax.splitHostPort(String(rest), defaultPort: 22)
        return SSHTarget(user: user, host: host, port: port ?? 22)
    }

    /// `user@host:port` (without `user@` when there is no user), IPv6 hosts in brackets.
    public var description: String {
        (user.map { "\($0)@" } ?? "") + "\(HostSyntax.bracketed(host)):\(port)"
    }
}

/// Syntax checks for host names and IP literals, shared by the address types and the loader.
enum HostSyntax {
    enum Kind: Equatable {
        case ipv4([UInt8])
        case ipv6([UInt16])
        case name
    }

    static func bracketed(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }

    static func describe(_ scalar: Unicode.Scalar) -> String {
        if scalar == " " { return "a space" }
        return "the control character U+" + hex(scalar.value, width: 4)
    }

    static func hex(_ v: UInt32, width: Int) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// Splits `host:port` / `[v6]:port` / `host` (when `defaultPort` is given, the port is optional).
    static func splitHostPort(_ s: String, defaultPort: UInt16?) throws(AddressError) -> (String, UInt16?) {
        let example = defaultPort == nil ? "host:port" : "[user@]host[:port]"
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else {
                throw AddressError("missing \"]\" after IPv6 address")
            }
            let host = String(s[s.index(after: s.startIndex)..<close])
            if host.isEmpty { throw AddressError("empty host in brackets") }
            guard parseIPv6(host) != nil else {
                throw AddressError("\"\(host)\" is not a valid IPv6 address")
            }
            let rest = s[s.index(after: close)...]
            if rest.isEmpty {
                if defaultPort != nil { return (host, nil) }
                throw AddressError("missing port (expected [host]:port)")
            }
            guard rest.first == ":" else {
                throw AddressError("unexpected \"\(rest)\" after \"]\" (expected :port)")
            }
            return (host, try parsePort(String(rest.dropFirst())))
        }
        let colons = s.reduce(0) { $0 + ($1 == ":" ? 1 : 0) }
        if colons > 1 {
            throw AddressError("IPv6 addresses must be written in brackets, e.g. [::1]:22")
        }
        if colons == 0 {
            if defaultPort == nil && !s.isEmpty && s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                throw AddressError("missing host (expected host:port, e.g. 127.0.0.1:\(s))")
            }
            if defaultPort == nil {
                throw AddressError("missing port (expected \(example))")
            }
            try validateHost(s)
            return (s, nil)
        }
        let colon = s.firstIndex(of: ":")!
        let host = String(s[..<colon])
        if host.isEmpty { throw AddressError("missing host (expected \(example))") }
        try validateHost(host)
        return (host, try parsePort(String(s[s.index(after: colon)...])))
    }

    static func parsePort(_ p: String) throws(AddressError) -> UInt16 {
        if p.isEmpty { throw AddressError("missing port number after \":\"") }
        guard p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw AddressError("port \"\(p)\" is not a number")
        }
        guard p.utf8.count <= 5, let v = Int(p), v >= 1, v <= 65535 else {
            throw AddressError("port must be 1-65535")
        }
        return UInt16(v)
    }

    /// Throws if `host` is neither an IP literal nor a syntactically valid host name.
    @discardableResult
    static func validateHost(_ host: String) throws(AddressError) -> Kind {
        if host.isEmpty { throw AddressError("empty host") }
        if let bad = host.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            throw AddressError("host contains \(describe(bad))")
        }
        if host.contains(":") {
            guard let v6 = parseIPv6(host) else { throw AddressError("\"\(host)\" is not a valid IPv6 address") }
            return .ipv6(v6)
        }
        if host.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            guard let v4 = parseIPv4(Substring(host)) else {
                throw AddressError("\"\(host)\" is not a valid IPv4 address")
            }
            return .ipv4(v4)
        }
        guard isValidHostName(host) else {
            throw AddressError("\"\(host)\" is not a valid host name")
        }
        return .name
    }

    static func kind(_ host: String) -> Kind? {
        if let v4 = parseIPv4(Substring(host)) { return .ipv4(v4) }
        if let v6 = parseIPv6(host) { return .ipv6(v6) }
        return isValidHostName(host) ? .name : nil
    }

    /// Letters, digits, `-` and `_` in dot-separated labels of 1-63 characters, 253 in all; a trailing dot is allowed.
    static func isValidHostName(_ s: String) -> Bool {
        var name = Substring(s)
        if name.hasSuffix(".") { name = name.dropLast() }
        if name.isEmpty || name.utf8.count > 253 { return false }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty || label.utf8.count > 63 { return false }
            if label.hasPrefix("-") || label.hasSuffix("-") { return false }
            for b in label.utf8 {
                let ok =
                    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                    || b == 0x2D || b == 0x5F
                if !ok { return false }
            }
        }
        return true
    }

    /// Strict dotted quad: four decimal parts 0-255 without leading zeros.
    static func parseIPv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.utf8.count <= 3, p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            if p.utf8.count > 1 && p.hasPrefix("0") { return nil }
            guard let v = Int(p), v <= 255 else { return nil }
            out.append(UInt8(v))
        }
        return out
    }

    /// RFC 4291 text form, with `::` compression, an optional trailing dotted quad and an optional `%zone`.
    static func parseIPv6(_ input: String) -> [UInt16]? {
        var s = Substring(input)
        if let pct = s.firstIndex(of: "%") {
            let zone = s[s.index(after: pct)...]
            guard !zone.isEmpty,
                zone.utf8.allSatisfy({ b in
                    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                        || b == 0x2D || b == 0x5F || b == 0x2E
                })
            else { return nil }
            s = s[..<pct]
        }
        if s.isEmpty { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDouble = false
        let pieces: [Substring]
        if let r = s.firstRange(of: "::") {
            sawDouble = true
            let before = s[..<r.lowerBound]
            let after = s[r.upperBound...]
            if after.contains("::") { return nil }
            guard let h = groups(before, allowV4: false), let t = groups(after, allowV4: true) else { return nil }
            head = h
            tail = t
            if head.count + tail.count > 7 { return nil }
            pieces = []
        } else {
            pieces = [s]
        }
        if !sawDouble {
            guard let all = groups(pieces[0], allowV4: true), all.count == 8 else { return nil }
            return all
        }
        return head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
    }

    private static func groups(_ s: Substring, allowV4: Bool) -> [UInt16]? {
        if s.isEmpty { return [] }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        var out: [UInt16] = []
        for (i, p) in parts.enumerated() {
            if allowV4 && i == parts.count - 1 && p.contains(".") {
                guard let v4 = parseIPv4(p) else { return nil }
                out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                continue
            }
            guard !p.isEmpty, p.utf8.count <= 4, let v = UInt16(p, radix: 16),
                p.utf8.allSatisfy({
                    ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66)
                })
            else { return nil }
            out.append(v)
        }
        return out
    }

    static func isLoopback(_ host: String) -> Bool {
        switch kind(host) {
        case .ipv4(let b)?: return b[0] == 127
        case .ipv6(let g)?:
            if g == [0, 0, 0, 0, 0, 0, 0, 1] { return true }
            return g[0..<5].allSatisfy { $0 == 0 } && g[5] == 0xFFFF && g[6] >> 8 == 127
        case .name?:
            let l = host.lowercased()
            return l == "localhost" || l == "localhost."
        case nil: return false
        }
    }

    static func isWildcard(_ host: String) -> Bool {
        switch kind(host) {
        case .ipv4(let b)?: return b == [0, 0, 0, 0]
        case .ipv6(let g)?: return g.allSatisfy { $0 == 0 } && !host.contains("%")
        default: return false
        }
    }

    /// The addresses a listener on `host` would occupy, in a canonical spelling, for overlap checks.
    static func bindKeys(_ host: String) -> Set<String> {
        switch kind(host) {
        case .ipv4(let b)?: return [b.map(String.init).joined(separator: ".")]
        case .ipv6(let g)?:
            if g[0..<5].allSatisfy({ $0 == 0 }) && g[5] == 0xFFFF {
                return ["\(g[6] >> 8).\(g[6] & 0xFF).\(g[7] >> 8).\(g[7] & 0xFF)"]
            }
            var key = g.map { String($0, radix: 16) }.joined(separator: ":")
            if let pct = host.firstIndex(of: "%") { key += String(host[pct...]) }
            return [key]
        case .name?:
            let l = host.lowercased()
            if l == "localhost" || l == "localhost." { return ["127.0.0.1", "0:0:0:0:0:0:0:1"] }
            return [l.hasSuffix(".") ? String(l.dropLast()) : l]
        case nil: return [host]
        }
    }

    /// Whether listeners on `a` and `b` would conflict (ports compared by the caller).
    static func overlaps(_ a: String, _ b: String) -> Bool {
        if isWildcard(a) || isWildcard(b) { return true }
        return !bindKeys(a).isDisjoint(with: bindKeys(b))
    }
}

/// One local forward: a listen address on this machine and the destination the SSH server connects
/// to for each client (ssh's `-L`).
public struct Forward: Hashable, Sendable, CustomStringConvertible {
    public var local: Endpoint
    public var remote: Endpoint

    public init(local: Endpoint, remote: Endpoint) {
        self.local = local
        self.remote = remote
    }

    /// The most forwards one tunnel may carry (each a listener on the tunnel's one driver thread).
    public static let maximumPerTunnel = 64

    /// Parses ssh's `-L` syntax: `[bind_address:]port:host:hostport`. IPv6 addresses go in
    /// brackets (`[::1]:9000:[fe80::1]:22`). Without a bind address the forward listens on
    /// 127.0.0.1 (loopback, ssh's default); `*` or an empty bind address (`:8080:host:80`) means
    /// every interface (0.0.0.0). Unix socket paths are not accepted.
    public static func parse(_ s: String) throws(AddressError) -> Forward {
        if s.isEmpty { throw AddressError("empty forward (expected [bind_address:]port:host:hostport)") }
        if s.contains("/") {
            throw AddressError(
                "Unix domain socket forwards are not supported; ecto-tunnel forwards TCP ports ([bind_address:]port:host:hostport)"
            )
        }
        if let bad = s.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            throw AddressError("contains \(HostSyntax.describe(bad)) (expected [bind_address:]port:host:hostport)")
        }
        // Split at colons outside brackets.
        var parts: [String] = []
        var current = ""
        var inBrackets = false
        for c in s {
            switch c {
            case "[":
                if inBrackets || !current.isEmpty {
                    throw AddressError("unexpected \"[\" in \"\(s)\": brackets enclose a whole IPv6 address")
                }
                inBrackets = true
                current.append(c)
            case "]":
                guard inBrackets else { throw AddressError("unexpected \"]\" in \"\(s)\"") }
                inBrackets = false
                current.append(c)
            case ":" where !inBrackets:
                parts.append(current)
                current = ""
            default:
                current.append(c)
            }
        }
        if inBrackets { throw AddressError("missing \"]\" after IPv6 address in \"\(s)\"") }
        parts.append(current)
        if parts.count > 4 {
            throw AddressError(
                "too many \":\" in \"\(s)\": IPv6 addresses must be written in brackets, e.g. [::1]:9000:[fe80::1]:22")
        }
        guard parts.count >= 3 else {
            throw AddressError("\"\(s)\" is not [bind_address:]port:host:hostport (e.g. \"18789:127.0.0.1:18789\")")
        }
        let bindText = parts.count == 4 ? parts[0] : nil
        let (portText, hostText, hostPortText) = (
            parts[parts.count - 3], parts[parts.count - 2], parts[parts.count - 1]
        )
        func host(_ text: String, _ role: String) throws(AddressError) -> String {
            var h = text
            if h.hasPrefix("[") {
                guard h.hasSuffix("]") else { throw AddressError("unexpected text after \"]\" in \(role) \"\(text)\"") }
                h = String(h.dropFirst().dropLast())
                if h.isEmpty { throw AddressError("empty \(role) in brackets") }
                guard HostSyntax.parseIPv6(h) != nil else {
                    throw AddressError("\(role) \"\(h)\" is not a valid IPv6 address")
                }
                return h
            }
            if h.isEmpty { throw AddressError("missing \(role) in \"\(s)\"") }
            do { try HostSyntax.validateHost(h) } catch { throw AddressError("\(role): \(error.message)") }
            return h
        }
        func port(_ text: String, _ role: String) throws(AddressError) -> UInt16 {
            do { return try HostSyntax.parsePort(text) } catch { throw AddressError("\(role): \(error.message)") }
        }
        let bindHost: String
        switch bindText {
        case nil: bindHost = "127.0.0.1"
        case "", "*": bindHost = "0.0.0.0"
        case let text?: bindHost = try host(text, "bind address")
        }
        let local = Endpoint(host: bindHost, port: try port(portText, "local port"))
        let remote = Endpoint(
            host: try host(hostText, "destination host"), port: try port(hostPortText, "destination port"))
        return Forward(local: local, remote: remote)
    }

    /// In `-L` syntax, with the bind address always written: `127.0.0.1:8080:localhost:80`.
    public var description: String { "\(local):\(remote)" }
}
