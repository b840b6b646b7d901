import EctoConfig
import EctoSSH

extension ConfigEnvironment {
    /// The real environment, judging identity files the way the daemon will use them: mode and
    /// owner, format, key type, encryption, and (with a readable passphrase file) decryption.
    /// For `check` and `connect`, which must not accept a key the daemon cannot use.
    static var judgingKeys: ConfigEnvironment {
        var environment = ConfigEnvironment.current
        environment.judgeKeyFiles = true
        environment.keyVerifier = { bytes, passphrase in SSHPrivateKey.problem(bytes, passphrase: passphrase) }
        return environment
    }
}
