/// Which token and password to present to an OpenClaw gateway, following OpenClaw's own remote-mode
/// precedence (https://docs.openclaw.ai/gateway/remote, "Credential precedence"):
///
/// - token: `--token` → `gateway.remote.token` → `OPENCLAW_GATEWAY_TOKEN` → `gateway.auth.token`
/// - password: `--password` → `OPENCLAW_GATEWAY_PASSWORD` → `gateway.remote.password` → `gateway.auth.password`
///
/// Empty values count as unset. A config value written as `"${VAR}"` or as an env SecretRef is read
/// from the environment; if that variable is unset the step is skipped (and said so in `skipped`).
/// The result says which source won, so `connect`/`status --deep` can print where the token comes
/// from, and its `description` never contains a secret.

/// Where a credential came from.
public enum CredentialSource: Sendable, Equatable, CustomStringConvertible {
    /// A command line option (`--token`, `--password`).
    case commandLine(option: String)
    /// An environment variable.
    case environment(variable: String)
    /// A key of the OpenClaw config (`gateway.remote.token`), possibly through `${VAR}` / a SecretRef.
    case openClawConfig(key: String, location: SettingLocation, viaVariable: String?)

    public var description: String {
        switch self {
        case .commandLine(let option): return option
        case .environment(let variable): return "$\(variable)"
        case .openClawConfig(let key, let location, let variable):
            return "\(key) (\(location))" + (variable.map { " via $\($0)" } ?? "")
        }
    }
}

/// A secret and where it came from. `description` is redacted; use `value` or `reveal()` deliberately.
public struct ResolvedSecret: Sendable, Equatable, CustomStringConvertible {
    public var value: String
    public var source: CredentialSource

    public init(value: String, source: CredentialSource) {
        self.value = value
        self.source = source
    }

    /// `<redacted, N characters> from SOURCE`: safe for logs and output.
    public var description: String { "<redacted, \(value.count) characters> from \(source)" }

    /// The value with its source, for `--show-token`.
    public func reveal() -> String { "\(value) from \(source)" }
}

/// The token and password to use with a gateway; either may be absent.
public struct GatewayCredentials: Sendable, Equatable, CustomStringConvertible {
    public var token: ResolvedSecret?
    public var password: ResolvedSecret?
    /// Candidates that were set but could not be used, e.g. `gateway.remote.token refers to $X, which
    /// is not set`, or an unsupported SecretRef source. In precedence order.
    public var skipped: [String]

    public init(token: ResolvedSecret? = nil, password: ResolvedSecret? = nil, skipped: [String] = []) {
        self.token = token
        self.password = password
        self.skipped = skipped
    }

    /// Resolves both credentials.
    /// - Parameters:
    ///   - explicitToken: `--token`, if given. `explicitPassword`: `--password`.
    ///   - settings: the OpenClaw config, if one was read.
    ///   - environment: the process environment (`OPENCLAW_GATEWAY_TOKEN`, `OPENCLAW_GATEWAY_PASSWORD`,
    ///     and variables named by `${VAR}` / env SecretRefs).
    public static func resolve(
        explicitToken: String? = nil, explicitPassword: String? = nil,
        settings: OpenClawGatewaySettings? = nil, environment: [String: String]
    ) -> GatewayCredentials {
        var skipped: [String] = []
        enum Step {
            case explicit(String?, option: String)
            case variable(String)
            case config(OpenClawGatewaySettings.Located<OpenClawSecret>?, key: String)
        }
        func first(_ steps: [Step]) -> ResolvedSecret? {
            for step in steps {
                switch step {
                case .explicit(let v, let option):
                    if let v, !v.isEmpty { return ResolvedSecret(value: v, source: .commandLine(option: option)) }
                case .variable(let name):
                    if let v = environment[name], !v.isEmpty {
                        return ResolvedSecret(value: v, source: .environment(variable: name))
                    }
                case .config(let located, let key):
                    guard let located else { continue }
                    switch located.value {
                    case .literal(let v):
                        return ResolvedSecret(
                            value: v, source: .openClawConfig(key: key, location: located.location, viaVariable: nil))
                    case .environment(let name):
                        if let v = environment[name], !v.isEmpty {
                            return ResolvedSecret(
                                value: v,
                                source: .openClawConfig(key: key, location: located.location, viaVariable: name))
                        }
                        skipped.append("\(key) (\(located.location)) refers to $\(name), which is not set")
                    case .unsupportedReference(let source):
                        skipped.append(
                            "\(key) (\(located.location)) is a SecretRef with source \"\(source)\", which ecto-tunnel cannot resolve; pass the secret with the option or the environment variable"
                        )
                    }
                }
            }
            return nil
        }
        let token = first([
            .explicit(explicitToken, option: "--token"),
            .config(settings?.remoteToken, key: "gateway.remote.token"),
            .variable("OPENCLAW_GATEWAY_TOKEN"),
            .config(settings?.authToken, key: "gateway.auth.token"),
        ])
        let password = first([
            .explicit(explicitPassword, option: "--password"),
            .variable("OPENCLAW_GATEWAY_PASSWORD"),
            .config(settings?.remotePassword, key: "gateway.remote.password"),
            .config(settings?.authPassword, key: "gateway.auth.password"),
        ])
        return GatewayCredentials(token: token, password: password, skipped: skipped)
    }

    /// Two lines, `token: ...` and `password: ...`, secrets redacted (or shown with `reveal`).
    public func describe(reveal: Bool = false) -> String {
        func line(_ name: String, _ s: ResolvedSecret?) -> String {
            guard let s else { return "\(name): none" }
            return "\(name): " + (reveal ? s.reveal() : s.description)
        }
        return line("token", token) + "\n" + line("password", password)
    }

    public var description: String { describe(reveal: false) }
}
