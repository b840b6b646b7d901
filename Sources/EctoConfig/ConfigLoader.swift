import EctoPlatform

/// Reads and validates the ecto-tunnel config file. See docs/config.md.
public enum ConfigLoader {
    /// `$XDG_CONFIG_HOME/ecto-tunnel/config.toml` when XDG_CONFIG_HOME is set to an absolute path,
    /// else `~/.config/ecto-tunnel/config.toml`.
    public static func defaultPath(environment: ConfigEnvironment = .current) -> String {
        SSHClientConfig.joinPath(
            XDG.configHome(environment.variables, home: environment.home), "ecto-tunnel/config.toml")
    }

    /// Reads the file at `path` and validates it. A missing or unreadable file gives one error at line 0.
    public static func load(path: String, environment: ConfigEnvironment = .current) throws(ConfigErrors) -> Config {
        guard let bytes = environment.readBytes(path) else {
            let message: String
            switch environment.fileExists(path) {
            case .missing: message = "config file not found"
            case .directory: message = "is a directory, not a config file"
            case .regular, .other: message = "cannot read the config file (check its permissions)"
            }
            throw ConfigErrors([ConfigError(file: path, line: 0, message: message)])
        }
        let (text, utf8Errors) = decodeUTF8(bytes, path: path)
        return try validate(
            text: text, path: path, environment: environment, earlyErrors: utf8Errors,
            badLines: Set(utf8Errors.map(\.line)))
    }

    /// Validates config text; `path` is used in messages and for relative paths in the file.
    public static func parse(
        text: String, path: String, environment: ConfigEnvironment = .current
    ) throws(ConfigErrors) -> Config {
        try validate(text: text, path: path, environment: environment, earlyErrors: [], badLines: [])
    }

    /// The keys a tunnel table accepts, in documentation order.
    public static var tunnelKeys: [String] { KeySpec.all.map(\.name) }

    // MARK: - Internals

    static func validate(
        text: String, path: String, environment: ConfigEnvironment, earlyErrors: [ConfigError], badLines: Set<Int>
    ) throws(ConfigErrors) -> Config {
        let doc = TOMLParser.parse(text, badLines: badLines)
        var v = Validator(path: path, env: environment, source: Array(text.utf8))
        v.errors = earlyErrors
        v.errors += doc.errors.map { ConfigError(file: path, line: $0.line, column: $0.column, message: $0.message) }
        let tunnels = v.run(doc)
        let errors = dedupe(v.errors).enumerated()
            .sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }
            .map(\.element)
        if !errors.isEmpty { throw ConfigErrors(errors) }
        return Config(path: path, tunnels: tunnels, warnings: dedupe(v.warnings))
    }

    static func dedupe(_ errors: [ConfigError]) -> [ConfigError] {
        var seen: Set<ConfigError> = []
        return errors.filter { seen.insert($0).inserted }
    }

    /// Decodes UTF-8, reporting each line that has an invalid sequence (once per line).
    static func decodeUTF8(_ b: [UInt8], path: String) -> (String, [ConfigError]) {
        var errors: [ConfigError] = []
        var line = 1
        var lineStart = 0
        var reportedLine = 0
        var i = 0
        func cont(_ j: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool { j < b.count && b[j] >= lo && b[j] <= hi }
        while i < b.count {
            let c = b[i]
            if c == 0x0A {
                line += 1
                lineStart = i + 1
                i += 1
                continue
            }
            if c < 0x80 {
                i += 1
                continue
            }
            var len = 0
            switch c {
            case 0xC2...0xDF: len = cont(i + 1) ? 2 : 0
            case 0xE0: len = cont(i + 1, 0xA0) && cont(i + 2) ? 3 : 0
            case 0xE1...0xEC, 0xEE...0xEF: len = cont(i + 1) && cont(i + 2) ? 3 : 0
            case 0xED: len = cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : 0
            case 0xF0: len = cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0
            case 0xF1...0xF3: len = cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0
            case 0xF4: len = cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0
            default: len = 0
            }
            if len == 0 {
                if reportedLine != line {
                    reportedLine = line
                    errors.append(
                        ConfigError(
                            file: path, line: line,
                            column: TOMLParser.column(in: b, lineStart: lineStart, offset: i),
                            message:
                                "invalid UTF-8 (byte 0x\(HostSyntax.hex(UInt32(c), width: 2))); the config file must be UTF-8"
                        ))
                }
                i += 1
            } else {
                i += len
            }
        }
        return (String(decoding: b, as: UTF8.self), errors)
    }
}

// MARK: - Key table

struct KeySpec {
    enum Kind {
        case target, sshHost, user, endpoint, path, paths, credential, policy, fingerprint, bool, probe, forwards,
            hostKeyAlias
        /// A list of `[user@]host[:port]` (`jump`).
        case targets
        /// A command line with ssh's `%` tokens (`proxy_command`).
        case command
        /// `positive`: zero is not allowed.
        case duration(positive: Bool)
        case int(ClosedRange<Int>)
    }

    var name: String
    var kind: Kind
    /// May not be set in [defaults].
    var tunnelOnly = false

    var expected: String {
        switch kind {
        case .target: return "a string \"[user@]host[:port]\""
        case .sshHost: return "a string (a Host alias from ~/.ssh/config)"
        case .hostKeyAlias: return "a string (the name the server's key is listed under in known_hosts)"
        case .user: return "a string (a user name)"
        case .endpoint: return "a string \"host:port\""
        case .forwards: return "an array of strings \"[bind_address:]port:host:hostport\" (ssh's -L syntax)"
        case .path: return "a string (a file path)"
        case .paths: return "a string (a file path) or an array of them"
        case .credential: return "a string (a systemd credential name)"
        case .policy: return "\"strict\" or \"accept-new\""
        case .fingerprint: return "a string \"SHA256:...\""
        case .bool: return "true or false"
        case .probe: return "a string \"tcp\", \"http:/PATH\" or \"websocket:/PATH\""
        case .targets: return "an array of strings \"[user@]host[:port]\" (first hop first)"
        case .command: return "a string (a command line; tokens %h %p %r %n %%)"
        case .duration:
            return "a duration (seconds as a number, or a string like \"500ms\", \"15s\", \"2m\", \"1m30s\")"
        case .int(let r):
            return r.upperBound == Int.max
                ? "an integer ≥ \(r.lowerBound)" : "an integer \(r.lowerBound)-\(r.upperBound)"
        }
    }

    static let all: [KeySpec] = [
        KeySpec(name: "target", kind: .target, tunnelOnly: true),
        KeySpec(name: "ssh_host", kind: .sshHost, tunnelOnly: true),
        KeySpec(name: "user", kind: .user),
        KeySpec(name: "local", kind: .endpoint, tunnelOnly: true),
        KeySpec(name: "remote", kind: .endpoint, tunnelOnly: true),
        KeySpec(name: "forwards", kind: .forwards, tunnelOnly: true),
        KeySpec(name: "identity_file", kind: .paths),
        KeySpec(name: "identities_only", kind: .bool),
        KeySpec(name: "certificate_file", kind: .path),
        KeySpec(name: "identity_passphrase_file", kind: .path),
        KeySpec(name: "identity_passphrase_credential", kind: .credential),
        KeySpec(name: "known_hosts", kind: .path),
        KeySpec(name: "host_key_policy", kind: .policy),
        KeySpec(name: "host_key_fingerprint", kind: .fingerprint),
        KeySpec(name: "host_key_alias", kind: .hostKeyAlias, tunnelOnly: true),
        KeySpec(name: "allow_non_loopback", kind: .bool),
        KeySpec(name: "enabled", kind: .bool),
        KeySpec(name: "keepalive_interval", kind: .duration(positive: false)),
        KeySpec(name: "keepalive_count_max", kind: .int(1...Int.max)),
        KeySpec(name: "connect_timeout", kind: .duration(positive: true)),
        KeySpec(name: "backoff_initial", kind: .duration(positive: true)),
        KeySpec(name: "backoff_max", kind: .duration(positive: true)),
        KeySpec(name: "hold_timeout", kind: .duration(positive: false)),
        KeySpec(name: "drain_timeout", kind: .duration(positive: false)),
        KeySpec(name: "probe", kind: .probe),
        KeySpec(name: "probe_interval", kind: .duration(positive: false)),
        KeySpec(name: "sessions", kind: .int(TunnelDefaults.sessionsRange)),
        KeySpec(name: "max_clients", kind: .int(TunnelDefaults.maxClientsRange)),
        KeySpec(name: "jump", kind: .targets),
        KeySpec(name: "proxy_command", kind: .command),
    ]

    static let byName: [String: KeySpec] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

/// Levenshtein distance (case-insensitive), for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a.lowercased().unicodeScalars)
    let y = Array(b.lowercased().unicodeScalars)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count)
    var cur = prev
    for i in 1...x.count {
        cur[0] = i
        for j in 1...y.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[y.count]
}

/// The closest candidate when it is close enough to be a likely typo.
func closest(to word: String, in candidates: [String]) -> String? {
    let limit = max(1, min(3, word.count / 3))
    var best: (String, Int)?
    for c in candidates {
        let d = editDistance(word, c)
        if d <= limit && (best == nil || d < best!.1) { best = (c, d) }
    }
    return best?.0
}

// MARK: - Validation

private struct Validator {
    enum Typed {
        case string(String)
        case bool(Bool)
        case int(Int)
        case duration(Duration)
        case policy(HostKeyPolicy)
        case endpoint(Endpoint)
        case target(SSHTarget)
        case probe(ProbeSpec)
        case paths([String])
        case targets([SSHTarget])
        case forwards([Forward])
    }

    /// A value and where it came from, for messages.
    struct Origin {
        var line: Int
        var key: String
        /// Appended to messages about values that did not come from the config file itself.
        var note: String = ""
    }

    struct Setting {
        var value: Typed
        var origin: Origin
        var raw: String

        var string: String? { if case .string(let s) = value { return s } else { return nil } }
        var bool: Bool? { if case .bool(let b) = value { return b } else { return nil } }
        var int: Int? { if case .int(let i) = value { return i } else { return nil } }
        var duration: Duration? { if case .duration(let d) = value { return d } else { return nil } }
        var policy: HostKeyPolicy? { if case .policy(let p) = value { return p } else { return nil } }
        var endpoint: Endpoint? { if case .endpoint(let e) = value { return e } else { return nil } }
        var target: SSHTarget? { if case .target(let t) = value { return t } else { return nil } }
        var probe: ProbeSpec? { if case .probe(let p) = value { return p } else { return nil } }
        var targets: [SSHTarget]? { if case .targets(let t) = value { return t } else { return nil } }
        var forwards: [Forward]? { if case .forwards(let f) = value { return f } else { return nil } }
        var paths: [String]? {
            if case .paths(let p) = value { return p }
            if case .string(let s) = value { return [s] }
            return nil
        }
    }

    /// A table's keys after type checks. `present` includes keys whose value was invalid.
    struct Settings {
        var values: [String: Setting] = [:]
        var present: Set<String> = []
        subscript(_ key: String) -> Setting? { values[key] }
    }

    let path: String
    let env: ConfigEnvironment
    let source: [UInt8]
    var errors: [ConfigError] = []
    var warnings: [ConfigError] = []
    var sshCache: [String: SSHHostSettings] = [:]

    init(path: String, env: ConfigEnvironment, source: [UInt8]) {
        self.path = path
        self.env = env
        self.source = source
    }

    var configDirectory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }

    mutating func error(_ line: Int, _ key: String?, _ message: String) {
        errors.append(ConfigError(file: path, line: line, key: key, message: message))
    }

    mutating func error(_ o: Origin, _ message: String) {
        errors.append(ConfigError(file: path, line: o.line, key: o.key, message: message + o.note))
    }

    func raw(_ node: TOMLNode) -> String {
        guard node.range.upperBound <= source.count else { return "" }
        return String(decoding: source[node.range], as: UTF8.self)
    }

    // MARK: Document level

    mutating func run(_ doc: TOMLDocument) -> [TunnelConfig] {
        for e in doc.root.entries {
            let q = TOMLTable.quoteKeyIfNeeded(e.key)
            let hint =
                KeySpec.byName[e.key] != nil
                ? "; put it in a [tunnels.NAME] table (or [defaults])"
                : ""
            error(e.line, q, "keys are not allowed at the top level: only [defaults] and [tunnels.NAME] tables\(hint)")
        }
        var defaults = Settings()
        var tunnelTables: [TOMLTable] = []
        for t in doc.tables {
            let name = t.dottedName
            switch t.path.count {
            case 1 where t.path[0] == "defaults":
                defaults = readTable(t, prefix: "defaults", inDefaults: true)
            case 1 where t.path[0] == "tunnels":
                for e in t.entries {
                    error(
                        e.line, "tunnels.\(TOMLTable.quoteKeyIfNeeded(e.key))",
                        "keys are not allowed directly in [tunnels]; put them in a [tunnels.NAME] table")
                }
            case 2 where t.path[0] == "tunnels":
                tunnelTables.append(t)
            default:
                var msg = "unknown table [\(name)]: the config has only [defaults] and [tunnels.NAME] tables"
                if t.path[0] == "tunnels" || t.path[0] == "defaults" {
                    msg =
                        "unknown table [\(name)]: tables cannot be nested inside [\(t.path[0])\(t.path[0] == "tunnels" ? "." + TOMLTable.quoteKeyIfNeeded(t.path[1]) : "")]"
                } else if t.path.count == 1, closest(to: t.path[0], in: ["defaults"]) != nil {
                    msg += "; did you mean [defaults]?"
                } else if t.path.count == 1, closest(to: t.path[0], in: ["tunnels"]) != nil {
                    msg += "; did you mean [tunnels.NAME]?"
                } else if t.path.count == 2, closest(to: t.path[0], in: ["tunnels"]) != nil {
                    msg += "; did you mean [tunnels.\(TOMLTable.quoteKeyIfNeeded(t.path[1]))]?"
                } else if t.path.count == 1 {
                    msg += "; did you mean [tunnels.\(TOMLTable.quoteKeyIfNeeded(t.path[0]))]?"
                }
                error(t.line, nil, msg)
            }
        }
        var tunnels: [TunnelConfig] = []
        var locals: [(name: String, endpoint: Endpoint, origin: Origin)] = []
        for t in tunnelTables {
            let name = t.path[1]
            let prefix = "tunnels.\(TOMLTable.quoteKeyIfNeeded(name))"
            let nameOK = !name.isEmpty && name.utf8.allSatisfy(TOMLParser.isBareKeyByte)
            if !nameOK {
                error(t.line, prefix, "tunnel name \(TOMLWriter.quote(name)) may only contain letters, digits, _ and -")
            }
            let settings = readTable(t, prefix: prefix, inDefaults: false)
            if let local = settings["local"], let ep = local.endpoint {
                locals.append((name, ep, local.origin))
            }
            if let forwards = settings["forwards"], let list = forwards.forwards {
                for f in list { locals.append((name, f.local, forwards.origin)) }
            }
            if let tc = resolveTunnel(name: name, prefix: prefix, table: t, settings: settings, defaults: defaults),
                nameOK
            {
                tunnels.append(tc)
            }
        }
        // Local endpoints must not overlap (0.0.0.0 and :: overlap everything on their port).
        for (i, a) in locals.enumerated() {
            // Within one tunnel's forwards the tunnel itself reports it (`resolveTunnel`).
            if let b = locals[..<i].first(where: {
                $0.name != a.name && $0.endpoint.port == a.endpoint.port
                    && HostSyntax.overlaps($0.endpoint.host, a.endpoint.host)
            }) {
                error(
                    a.origin,
                    "\(TOMLWriter.quote(a.endpoint.description)) overlaps local \(TOMLWriter.quote(b.endpoint.description)) of tunnel \(TOMLWriter.quote(b.name)) (line \(b.origin.line)); each tunnel needs its own listen address"
                )
            }
        }
        if tunnels.isEmpty && tunnelTables.isEmpty {
            warnings.append(ConfigError(file: path, line: 0, message: "no [tunnels.NAME] tables: nothing to forward"))
        }
        return tunnels
    }

    /// Type-checks every entry of a table; unknown keys are reported.
    mutating func readTable(_ t: TOMLTable, prefix: String, inDefaults: Bool) -> Settings {
        var s = Settings()
        for e in t.entries {
            let keyPath = "\(prefix).\(TOMLTable.quoteKeyIfNeeded(e.key))"
            guard let spec = KeySpec.byName[e.key] else {
                if let hint = closest(to: e.key, in: KeySpec.all.map(\.name)) {
                    error(e.line, keyPath, "unknown key; did you mean \(hint)?")
                } else {
                    error(
                        e.line, keyPath, "unknown key (known keys: \(KeySpec.all.map(\.name).joined(separator: ", ")))")
                }
                continue
            }
            if inDefaults && spec.tunnelOnly {
                error(e.line, keyPath, "\(spec.name) cannot be set in [defaults]; set it in each [tunnels.NAME] table")
                continue
            }
            s.present.insert(e.key)
            if let v = convert(e, spec: spec, keyPath: keyPath) {
                s.values[e.key] = v
            }
        }
        return s
    }

    /// `~` and relative paths (relative to the config file's directory) made absolute.
    mutating func expandPath(_ s: String, line: Int, keyPath: String) -> String? {
        if s.isEmpty {
            error(line, keyPath, "empty path")
            return nil
        }
        if s.hasPrefix("~") && s != "~" && !s.hasPrefix("~/") {
            error(
                line, keyPath,
                "\(TOMLWriter.quote(s)): only ~ and ~/ are expanded (~user is not supported); use an absolute path")
            return nil
        }
        var p = SSHClientConfig.expandTilde(s, home: env.home)
        if !p.hasPrefix("/") { p = SSHClientConfig.joinPath(configDirectory, p) }
        return p
    }

    mutating func typeError(_ e: TOMLEntry, _ spec: KeySpec, _ keyPath: String) {
        error(e.line, keyPath, "expected \(spec.expected), got \(e.value.typeName) \(raw(e.value))")
    }

    /// The strings of a list value (`identity_file`, `jump`, `forwards`), each with its line, or nil
    /// after reporting the error: with `single`, one string is a list of one; an element that is not
    /// a string is reported at its own line with `elementLines`, else at the key's.
    mutating func stringList(
        _ e: TOMLEntry, _ spec: KeySpec, _ keyPath: String, single: Bool, elementLines: Bool
    ) -> [(text: String, line: Int)]? {
        let nodes: [TOMLNode]
        switch e.value.value {
        case .string where single: nodes = [e.value]
        case .array(let items): nodes = items
        default:
            typeError(e, spec, keyPath)
            return nil
        }
        var items: [(text: String, line: Int)] = []
        for node in nodes {
            guard case .string(let text) = node.value else {
                error(
                    elementLines ? node.line : e.line, keyPath,
                    "expected \(spec.expected), got an array holding \(node.typeName) \(raw(node))")
                return nil
            }
            items.append((text, node.line))
        }
        return items
    }

    /// Checks one value's type and syntax; nil (with an error recorded) if it is not usable.
    mutating func convert(_ e: TOMLEntry, spec: KeySpec, keyPath: String) -> Setting? {
        let node = e.value
        if case .invalid = node.value { return nil }  // syntax error already reported
        let origin = Origin(line: e.line, key: keyPath)
        let rawText = raw(node)
        func make(_ v: Typed) -> Setting { Setting(value: v, origin: origin, raw: rawText) }

        if case .duration(let positive) = spec.kind {
            let d: Duration
            do {
                switch node.value {
                case .integer(let i): d = try DurationSyntax.fromSeconds(i)
                case .float(let f): d = try DurationSyntax.fromSeconds(f)
                case .string(let s): d = try DurationSyntax.parse(s)
                default:
                    typeError(e, spec, keyPath)
                    return nil
                }
            } catch {
                self.error(e.line, keyPath, "\(rawText) is not a valid duration: \(error.message)")
                return nil
            }
            if positive && d == .zero {
                error(e.line, keyPath, "must be greater than 0")
                return nil
            }
            return make(.duration(d))
        }
        if case .int(let range) = spec.kind {
            guard case .integer(let i) = node.value else {
                typeError(e, spec, keyPath)
                return nil
            }
            guard i >= Int64(range.lowerBound), i <= Int64(clamping: range.upperBound) else {
                error(
                    e.line, keyPath,
                    range.upperBound == Int.max
                        ? "\(i) is too small: must be at least \(range.lowerBound)"
                        : "\(i) is out of range: must be \(range.lowerBound)-\(range.upperBound)")
                return nil
            }
            return make(.int(Int(i)))
        }
        if case .bool = spec.kind {
            guard case .boolean(let b) = node.value else {
                typeError(e, spec, keyPath)
                return nil
            }
            return make(.bool(b))
        }
        if case .forwards = spec.kind {
            guard let items = stringList(e, spec, keyPath, single: true, elementLines: true) else { return nil }
            if items.isEmpty {
                error(
                    e.line, keyPath,
                    "empty list: give at least one forward, e.g. forwards = [\"18789:127.0.0.1:18789\"]")
                return nil
            }
            if items.count > Forward.maximumPerTunnel {
                error(e.line, keyPath, "\(items.count) forwards: at most \(Forward.maximumPerTunnel) per tunnel")
                return nil
            }
            var forwards: [Forward] = []
            for (index, item) in items.enumerated() {
                do {
                    forwards.append(try Forward.parse(item.text))
                } catch {
                    self.error(
                        item.line, keyPath, "forward \(index + 1) \(TOMLWriter.quote(item.text)): \(error.message)")
                    return nil
                }
            }
            return make(.forwards(forwards))
        }
        if case .paths = spec.kind {
            guard let items = stringList(e, spec, keyPath, single: true, elementLines: false) else { return nil }
            if items.isEmpty {
                error(
                    e.line, keyPath, "empty list: give at least one path, or leave identity_file out for ssh's defaults"
                )
                return nil
            }
            var paths: [String] = []
            for item in items {
                guard let path = expandPath(item.text, line: e.line, keyPath: keyPath) else { return nil }
                if !paths.contains(path) { paths.append(path) }
            }
            return make(.paths(paths))
        }
        if case .targets = spec.kind {
            guard let items = stringList(e, spec, keyPath, single: false, elementLines: false) else { return nil }
            if items.count > TunnelDefaults.maxJumpHosts {
                error(
                    e.line, keyPath, "\(items.count) jump hosts: at most \(TunnelDefaults.maxJumpHosts) are supported")
                return nil
            }
            var hops: [SSHTarget] = []
            for (index, item) in items.enumerated() {
                let text = item.text
                do {
                    hops.append(try SSHTarget.parse(text))
                } catch {
                    self.error(
                        e.line, keyPath,
                        "hop \(index + 1), \(TOMLWriter.quote(text)), is not a valid jump host: \(error.message) (expected [user@]host[:port])"
                    )
                    return nil
                }
            }
            return make(.targets(hops))
        }
        guard case .string(let s) = node.value else {
            typeError(e, spec, keyPath)
            return nil
        }
        let q = TOMLWriter.quote(s)
        switch spec.kind {
        case .target:
            do {
                return make(.target(try SSHTarget.parse(s)))
            } catch {
                self.error(
                    e.line, keyPath, "\(q) is not a valid target: \(error.message) (expected [user@]host[:port])")
                return nil
            }
        case .endpoint:
            do {
                return make(.endpoint(try Endpoint.parse(s)))
            } catch {
                self.error(e.line, keyPath, "\(q) is not a valid address: \(error.message)")
                return nil
            }
        case .sshHost:
            if s.isEmpty || s.hasPrefix("-")
                || s.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F })
            {
                error(
                    e.line, keyPath,
                    "\(q) is not a valid Host alias (it must be non-empty, without spaces, and not start with -)")
                return nil
            }
            return make(.string(s))
        case .hostKeyAlias:
            if s.isEmpty
                || s.unicodeScalars.contains(where: {
                    $0.value <= 0x20 || $0.value == 0x7F || $0 == "," || $0 == "*" || $0 == "?" || $0 == "!"
                })
            {
                error(
                    e.line, keyPath,
                    "\(q) is not a valid host key alias (a name without spaces, commas or the wildcards * ? !)")
                return nil
            }
            return make(.string(s))
        case .user:
            if s.isEmpty || s.hasPrefix("-") || s.contains("@")
                || s.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F })
            {
                error(
                    e.line, keyPath,
                    "\(q) is not a valid user name (it must be non-empty, without spaces or @, and not start with -)")
                return nil
            }
            return make(.string(s))
        case .path:
            return expandPath(s, line: e.line, keyPath: keyPath).map { make(.string($0)) }
        case .paths, .forwards:
            return nil  // handled above
        case .credential:
            if s.isEmpty || s == "." || s == ".." || s.contains("/")
                || s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            {
                error(
                    e.line, keyPath,
                    "\(q) is not a valid credential name (a file name in $CREDENTIALS_DIRECTORY, without /)")
                return nil
            }
            return make(.string(s))
        case .policy:
            guard let p = HostKeyPolicy(rawValue: s) else {
                var msg = "\(q) is not a valid host key policy: expected \"strict\" or \"accept-new\""
                if let hint = closest(to: s, in: ["strict", "accept-new"]) { msg += "; did you mean \(hint)?" }
                error(e.line, keyPath, msg)
                return nil
            }
            return make(.policy(p))
        case .fingerprint:
            if let problem = Self.fingerprintProblem(s) {
                error(e.line, keyPath, "\(q) is not a valid host key fingerprint: \(problem)")
                return nil
            }
            return make(.string(s))
        case .probe:
            do {
                return make(.probe(try ProbeSpec.parse(s)))
            } catch {
                self.error(e.line, keyPath, error.message)
                return nil
            }
        case .command:
            if let problem = ProxyCommandLine.problem(s) {
                error(e.line, keyPath, "\(q) is not a usable proxy command: \(problem)")
                return nil
            }
            return make(.string(s))
        case .bool, .duration, .int, .targets:
            return nil  // handled above
        }
    }

    static func fingerprintProblem(_ s: String) -> String? {
        let expected = "expected SHA256: followed by 43 base64 characters, as printed by ssh-keygen -lf"
        if s.uppercased().hasPrefix("MD5:") { return "MD5 fingerprints are not supported; \(expected)" }
        guard s.hasPrefix("SHA256:") else { return expected }
        var b64 = s.dropFirst(7)
        if b64.hasSuffix("=") {
            while b64.hasSuffix("=") { b64 = b64.dropLast() }
            if b64.count == 43 { return "remove the \"=\" padding at the end" }
        }
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        if let bad = b64.first(where: { !alphabet.contains($0) }) {
            return "\(TOMLWriter.quote(String(bad))) is not a base64 character; \(expected)"
        }
        guard b64.count == 43 else { return "\(b64.count) characters after SHA256:, \(expected)" }
        // 43 characters carry 258 bits; the last 2 must be zero for a 32-byte digest.
        guard let last = b64.last, "AEIMQUYcgkosw048".contains(last) else {
            return "not the base64 of a 32-byte SHA-256 digest; \(expected)"
        }
        return nil
    }

    // MARK: Tunnel level

    mutating func resolveTunnel(
        name: String, prefix: String, table t: TOMLTable, settings s: Settings, defaults d: Settings
    )
        -> TunnelConfig?
    {
        let errorCount = errors.count
        let header = Origin(line: t.line, key: prefix)
        func pick(_ key: String) -> Setting? { s[key] ?? d[key] }
        func builtin(_ key: String) -> Origin {
            Origin(line: t.line, key: "\(prefix).\(key)", note: " (\(key) is not set, so its default is used)")
        }

        // Required keys: one forward as local/remote, or a forwards list (not both).
        if s.present.contains("forwards") {
            for key in ["local", "remote"] where s.present.contains(key) {
                let line = max(s[key]?.origin.line ?? t.line, s["forwards"]?.origin.line ?? t.line)
                error(
                    line, "\(prefix).\(key)",
                    "set either forwards or local/remote, not both: put this forward into the forwards list as \"[bind_address:]port:host:hostport\""
                )
            }
        } else {
            for key in ["local", "remote"] where !s.present.contains(key) {
                let example =
                    key == "local"
                    ? "\"127.0.0.1:18789\" (the listen address)"
                    : "\"127.0.0.1:18789\" (the destination as seen from the SSH server)"
                error(
                    t.line, "\(prefix).\(key)",
                    "missing required key \(key): set \(key) = \(example), or list several forwards with forwards = [\"18789:127.0.0.1:18789\", ...]"
                )
            }
        }
        let hasTarget = s.present.contains("target")
        let hasAlias = s.present.contains("ssh_host")
        if hasTarget && hasAlias {
            let line = max(s["target"]?.origin.line ?? t.line, s["ssh_host"]?.origin.line ?? t.line)
            error(line, prefix, "set either target or ssh_host, not both")
        } else if !hasTarget && !hasAlias {
            error(
                t.line, "\(prefix).target",
                "missing target: set target = \"[user@]host[:port]\" or ssh_host = \"alias\" (a Host in ~/.ssh/config)")
        }

        // Where to connect.
        var host: String?
        var port: UInt16 = 22
        var user: String?
        var sshHostAlias: String?
        var ssh: SSHHostSettings?
        if hasTarget && !hasAlias, let target = s["target"]?.target {
            host = target.host
            port = target.port
            user = s["user"]?.string ?? target.user ?? d["user"]?.string
        } else if hasAlias && !hasTarget, let aliasSetting = s["ssh_host"], let alias = aliasSetting.string {
            sshHostAlias = alias
            let settings = sshSettings(for: alias)
            ssh = settings
            let home = env.home
            if let hn = settings.hostName {
                do {
                    try HostSyntax.validateHost(hn.value)
                    host = hn.value
                } catch {
                    self.error(
                        aliasSetting.origin,
                        "HostName \(TOMLWriter.quote(hn.value)) at \(hn.location(home: home)) is not a valid host: \(error.message)"
                    )
                }
            } else if aliasUsableAsHost(alias) {
                host = alias
            } else {
                let where_ = SSHClientConfig.abbreviate(SSHClientConfig.defaultPath(environment: env), home: home)
                error(
                    aliasSetting.origin,
                    "\(TOMLWriter.quote(alias)) has no HostName in \(where_) and is not a resolvable host name; add a Host \(alias) block with a HostName, or use target = \"[user@]host[:port]\""
                )
            }
            if let p = settings.port {
                do {
                    port = try HostSyntax.parsePort(p.value)
                } catch {
                    self.error(
                        aliasSetting.origin,
                        "Port \(TOMLWriter.quote(p.value)) at \(p.location(home: home)) is not valid: \(error.message)")
                }
            }
            if let u = settings.user, s["user"] == nil {
                if u.value.isEmpty || u.value.contains(where: { $0 == " " || $0 == "\t" }) {
                    error(
                        aliasSetting.origin,
                        "User \(TOMLWriter.quote(u.value)) at \(u.location(home: home)) is not a valid user name")
                }
            }
            user = s["user"]?.string ?? settings.user?.value ?? d["user"]?.string
        }
        if user == nil {
            if env.user.isEmpty {
                if host != nil {
                    error(t.line, "\(prefix).user", "no user given and the login name is unknown; set user = \"name\"")
                }
            } else {
                user = env.user
            }
        }

        // Files.
        let home = env.home
        func fromSSH(_ v: SSHConfigValue, _ keyword: String, _ key: String) -> Setting {
            Setting(
                value: .string(v.value),
                origin: Origin(
                    line: s["ssh_host"]?.origin.line ?? t.line, key: "\(prefix).\(key)",
                    note: " (from \(keyword) at \(v.location(home: home)))"),
                raw: v.value)
        }
        var identity = s["identity_file"]
        if identity == nil && !s.present.contains("identity_file"), let files = ssh?.identityFiles, !files.isEmpty {
            // Every IdentityFile, in order, as ssh offers them.
            var usable: [SSHConfigValue] = []
            for v in files {
                if env.fileExists(v.value) == .regular {
                    if !usable.contains(where: { $0.value == v.value }) { usable.append(v) }
                } else {
                    // ssh itself skips missing identity files; so do we, but say so.
                    warnings.append(
                        ConfigError(
                            file: path, line: s["ssh_host"]?.origin.line ?? t.line, key: "\(prefix).identity_file",
                            message:
                                "IdentityFile \(TOMLWriter.quote(v.value)) at \(v.location(home: home)) is not a regular file; ignored"
                        ))
                }
            }
            if let first = usable.first {
                var setting = fromSSH(first, "IdentityFile", "identity_file")
                setting.value = .paths(usable.map(\.value))
                identity = setting
            }
        }
        if identity == nil && !s.present.contains("identity_file") { identity = d["identity_file"] }

        let tunnelSetsPassphrase =
            s.present.contains("identity_passphrase_file") || s.present.contains("identity_passphrase_credential")
        let passFile = tunnelSetsPassphrase ? s["identity_passphrase_file"] : d["identity_passphrase_file"]
        let passCred = tunnelSetsPassphrase ? s["identity_passphrase_credential"] : d["identity_passphrase_credential"]
        if let passFile, let passCred {
            let later = passFile.origin.line >= passCred.origin.line ? passFile.origin : passCred.origin
            error(
                Origin(line: later.line, key: later.key.hasPrefix("defaults.") ? "defaults" : prefix),
                "set at most one of identity_passphrase_file and identity_passphrase_credential")
        }
        if let passFile, let p = passFile.string { checkRegularFile(p, passFile.origin) }
        // Identity files: they must exist; with judgeKeyFiles (check, connect, install), judged as
        // the daemon will use them (mode, format, type, encryption, passphrase).
        let identityPaths = identity?.paths ?? []
        if let identity {
            let passphrase: [UInt8]? =
                env.judgeKeyFiles
                ? passFile?.string.flatMap { env.readBytes($0) }.map(IdentityCheck.passphraseBytes) : nil
            for p in identityPaths {
                if env.judgeKeyFiles {
                    if let problem = IdentityCheck.problem(
                        privateKey: p, passphraseConfigured: passFile != nil || passCred != nil, passphrase: passphrase,
                        environment: env)
                    {
                        error(identity.origin, problem)
                    }
                } else {
                    checkRegularFile(p, identity.origin)
                }
            }
        }
        var identitiesOnly = pick("identities_only")?.bool ?? false
        if s["identities_only"] == nil, let v = ssh?.identitiesOnly {
            identitiesOnly = v.value.lowercased() == "yes" || v.value.lowercased() == "true"
        }
        var certificate = s["certificate_file"]
        if certificate == nil && !s.present.contains("certificate_file"), let v = ssh?.certificateFiles.first {
            if env.fileExists(v.value) == .regular {
                certificate = fromSSH(v, "CertificateFile", "certificate_file")
            } else {
                // ssh skips a missing certificate file too.
                warnings.append(
                    ConfigError(
                        file: path, line: s["ssh_host"]?.origin.line ?? t.line, key: "\(prefix).certificate_file",
                        message:
                            "CertificateFile \(TOMLWriter.quote(v.value)) at \(v.location(home: home)) is not a regular file; ignored"
                    ))
            }
        }
        if certificate == nil && !s.present.contains("certificate_file") { certificate = d["certificate_file"] }
        if let certificate, let p = certificate.string {
            if let problem = IdentityCheck.problem(certificate: p, environment: env) {
                error(certificate.origin, problem)
            } else if let refusal = IdentityCheck.certificateRefusal(p, environment: env) {
                error(certificate.origin, refusal)
            }
        }
        if let passCred, let name = passCred.string, let dir = env.variables["CREDENTIALS_DIRECTORY"], !dir.isEmpty {
            let p = SSHClientConfig.joinPath(dir, name)
            if env.fileExists(p) != .regular {
                error(
                    passCred.origin,
                    "credential \(TOMLWriter.quote(name)) not found: \(p) is not a regular file ($CREDENTIALS_DIRECTORY=\(dir))"
                )
            }
        }

        let policy = pick("host_key_policy")?.policy ?? .strict
        var knownHosts = s["known_hosts"]
        if knownHosts == nil && !s.present.contains("known_hosts"), let v = ssh?.userKnownHostsFile {
            knownHosts = fromSSH(v, "UserKnownHostsFile", "known_hosts")
        }
        if knownHosts == nil && !s.present.contains("known_hosts") { knownHosts = d["known_hosts"] }
        let knownHostsPath = knownHosts?.string ?? SSHClientConfig.joinPath(home, ".ssh/known_hosts")
        let knownHostsOrigin = knownHosts?.origin ?? builtin("known_hosts")
        if knownHosts != nil || !s.present.contains("known_hosts") && !d.present.contains("known_hosts") {
            let kind = env.fileExists(knownHostsPath)
            switch (policy, kind) {
            case (_, .regular): break
            case (.strict, .missing):
                error(
                    knownHostsOrigin,
                    "\(TOMLWriter.quote(knownHostsPath)) does not exist; with host_key_policy = \"strict\" the server's key must already be in it: add it with ssh-keyscan, or set host_key_policy = \"accept-new\""
                )
            case (.acceptNew, .missing):
                let dir = Self.directoryName(knownHostsPath)
                if env.fileExists(dir) != .directory {
                    error(
                        knownHostsOrigin,
                        "the directory \(TOMLWriter.quote(dir)) of \(TOMLWriter.quote(knownHostsPath)) does not exist")
                }
            case (_, .directory):
                error(knownHostsOrigin, "\(TOMLWriter.quote(knownHostsPath)) is a directory, not a known_hosts file")
            case (_, .other):
                error(knownHostsOrigin, "\(TOMLWriter.quote(knownHostsPath)) is not a regular file")
            }
        }

        // Timers and numbers.
        func dur(_ key: String, _ def: Duration) -> Duration { pick(key)?.duration ?? def }
        // libssh2 sends keepalives in whole seconds, 2 at the least: what it would really do is
        // what the dead-peer time must be computed from, so the value is rounded here, and said.
        var keepaliveInterval = dur("keepalive_interval", TunnelDefaults.keepaliveInterval)
        let sendable = TunnelDefaults.sendableKeepaliveInterval(keepaliveInterval)
        if sendable != keepaliveInterval, let setting = pick("keepalive_interval") {
            warnings.append(
                ConfigError(
                    file: path, line: setting.origin.line, key: setting.origin.key,
                    message:
                        "keepalive_interval \(DurationSyntax.format(keepaliveInterval)) is used as \(DurationSyntax.format(sendable)): keepalives go out in whole seconds, 2 s at the least"
                        + setting.origin.note))
            keepaliveInterval = sendable
        }
        let backoffInitial = dur("backoff_initial", TunnelDefaults.backoffInitial)
        let backoffMax = dur("backoff_max", TunnelDefaults.backoffMax)
        if backoffMax < backoffInitial {
            let o = pick("backoff_max")?.origin ?? pick("backoff_initial")?.origin ?? header
            error(
                o,
                "backoff_max (\(DurationSyntax.format(backoffMax))) must be at least backoff_initial (\(DurationSyntax.format(backoffInitial)))"
            )
        }

        // How the target is reached: jump hosts or a proxy command, not both. Precedence as for
        // the other keys: the tunnel's own (either key overrides both), then the ssh_host alias's
        // ProxyJump or ProxyCommand, then [defaults].
        let tunnelSetsRoute = s.present.contains("jump") || s.present.contains("proxy_command")
        var sshRoute = SSHConfigImport.Route.none
        if !tunnelSetsRoute, let ssh { sshRoute = SSHConfigImport.route(ssh, environment: env) }
        let useDefaults = !tunnelSetsRoute && sshRoute == .none
        let jumpSetting = tunnelSetsRoute ? s["jump"] : useDefaults ? d["jump"] : nil
        let proxySetting = tunnelSetsRoute ? s["proxy_command"] : useDefaults ? d["proxy_command"] : nil
        var jump: [SSHTarget] = []
        var hopsOrigin = jumpSetting?.origin
        var hops = jumpSetting?.targets ?? []
        var proxyCommand = proxySetting?.string
        if let jumpSetting, let proxySetting, !(jumpSetting.targets ?? []).isEmpty {
            let later = jumpSetting.origin.line >= proxySetting.origin.line ? jumpSetting.origin : proxySetting.origin
            error(
                later, "set either jump or proxy_command, not both (ssh's ProxyJump and ProxyCommand are exclusive too)"
            )
            hops = []
        }
        if let aliasOrigin = s["ssh_host"]?.origin {
            switch sshRoute {
            case .none, .turnedOff:
                break
            case .jump(let fromSSH, _):
                hops = fromSSH
                hopsOrigin = aliasOrigin
            case .proxyCommand(let command, _):
                proxyCommand = command
            case .unusable(let setting, let value, let origin, let reason):
                error(
                    aliasOrigin,
                    "\(setting) \(TOMLWriter.quote(value)) at \(origin.abbreviated(home: env.home)): \(reason)")
            }
        }
        for hop in hops {
            var hop = hop
            if hop.user == nil {
                if env.user.isEmpty {
                    if let hopsOrigin {
                        error(
                            hopsOrigin,
                            "no user given for jump host \(hop.host) and the login name is unknown; write it as user@\(hop.host)"
                        )
                    }
                } else {
                    hop.user = env.user  // as ssh: the local user, not the target's
                }
            }
            jump.append(hop)
        }

        // Listening.
        let allowNonLoopback = pick("allow_non_loopback")?.bool ?? false
        if let local = s["local"], let ep = local.endpoint, !allowNonLoopback, !ep.isLoopback {
            error(
                local.origin,
                "\(TOMLWriter.quote(ep.description)) is not a loopback address (127.0.0.0/8, ::1 or localhost); set allow_non_loopback = true to listen on it"
            )
        }
        if let setting = s["forwards"], let list = setting.forwards {
            for (i, f) in list.enumerated() {
                if !allowNonLoopback && !f.local.isLoopback {
                    error(
                        setting.origin,
                        "forward \(i + 1) \(TOMLWriter.quote(f.description)) listens on \(f.local), not a loopback address (127.0.0.0/8, ::1 or localhost); set allow_non_loopback = true to listen on it"
                    )
                }
                if let j = list[..<i].firstIndex(where: {
                    $0.local.port == f.local.port && HostSyntax.overlaps($0.local.host, f.local.host)
                }) {
                    error(
                        setting.origin,
                        "forward \(i + 1) \(TOMLWriter.quote(f.description)) listens on \(f.local), which overlaps forward \(j + 1) \(TOMLWriter.quote(list[j].description)); each forward needs its own listen address"
                    )
                }
            }
        }

        let forwards: [Forward]
        if let list = s["forwards"]?.forwards {
            forwards = list
        } else if let local = s["local"]?.endpoint, let remote = s["remote"]?.endpoint {
            forwards = [Forward(local: local, remote: remote)]
        } else {
            return nil
        }
        guard errors.count == errorCount, let host, let user else { return nil }
        // Something earlier in this table had a type error: not usable either.
        if s.present.count != s.values.count { return nil }
        return TunnelConfig(
            name: name,
            target: SSHTarget(user: user, host: host, port: port),
            sshHostAlias: sshHostAlias,
            local: forwards[0].local,
            remote: forwards[0].remote,
            forwards: forwards,
            identityFiles: identityPaths,
            identitiesOnly: identitiesOnly,
            certificateFile: certificate?.string,
            identityPassphraseFile: passFile?.string,
            identityPassphraseCredential: passCred?.string,
            knownHosts: knownHostsPath,
            hostKeyPolicy: policy,
            hostKeyFingerprint: pick("host_key_fingerprint")?.string,
            hostKeyAlias: s["host_key_alias"]?.string ?? ssh?.hostKeyAlias?.value,
            allowNonLoopback: allowNonLoopback,
            enabled: pick("enabled")?.bool ?? true,
            keepaliveInterval: keepaliveInterval,
            keepaliveCountMax: pick("keepalive_count_max")?.int ?? TunnelDefaults.keepaliveCountMax,
            connectTimeout: dur("connect_timeout", TunnelDefaults.connectTimeout),
            backoffInitial: backoffInitial,
            backoffMax: backoffMax,
            holdTimeout: dur("hold_timeout", TunnelDefaults.holdTimeout),
            drainTimeout: dur("drain_timeout", TunnelDefaults.drainTimeout),
            probe: pick("probe")?.probe,
            probeInterval: dur("probe_interval", TunnelDefaults.probeInterval),
            sessions: pick("sessions")?.int ?? TunnelDefaults.sessions,
            maxClients: pick("max_clients")?.int ?? TunnelDefaults.maxClients,
            jump: jump,
            proxyCommand: proxyCommand,
            line: t.line)
    }

    static func directoryName(_ p: String) -> String {
        guard let slash = p.lastIndex(of: "/") else { return "." }
        let d = String(p[..<slash])
        return d.isEmpty ? "/" : d
    }

    mutating func checkRegularFile(_ p: String, _ origin: Origin) {
        switch env.fileExists(p) {
        case .regular: return
        case .missing: error(origin, "\(TOMLWriter.quote(p)) does not exist")
        case .directory: error(origin, "\(TOMLWriter.quote(p)) is a directory, not a file")
        case .other: error(origin, "\(TOMLWriter.quote(p)) is not a regular file")
        }
    }

    /// An alias without a HostName is used as the host name itself when it is an IP literal, a dotted
    /// name (not looked up, so a check works offline), `localhost`, or a single label that resolves.
    func aliasUsableAsHost(_ alias: String) -> Bool {
        switch HostSyntax.kind(alias) {
        case .ipv4?, .ipv6?: return true
        case .name?: return alias.contains(".") || HostSyntax.isLoopback(alias) || env.resolveHost(alias)
        case nil: return false
        }
    }

    mutating func sshSettings(for alias: String) -> SSHHostSettings {
        if let cached = sshCache[alias] { return cached }
        let settings = SSHClientConfig.resolve(host: alias, environment: env)
        sshCache[alias] = settings
        for m in settings.skippedMatchBlocks {
            warnings.append(
                ConfigError(
                    file: m.file, line: m.line,
                    message:
                        "Match block skipped: ecto-tunnel does not evaluate Match, so its settings are not applied to ssh_host aliases"
                ))
        }
        for p in settings.problems {
            warnings.append(ConfigError(file: p.file, line: p.line, message: p.value))
        }
        return settings
    }
}
