// Generated on Debian 12 with OpenSSH_9.2p1 (ssh-keygen) for EctoHostKeysTests.
// Keys: `ssh-keygen -q -t ed25519|ecdsa|rsa -N '' -f kNAME`; fingerprints: `ssh-keygen -l -E sha256 -f kNAME.pub`.
// known_hosts: hand-written (knownHostsFull, knownHostsClean); knownHostsHashed is `ssh-keygen -H -f` of knownHostsClean.
// find*: the header lines `ssh-keygen -F NAME -f FILE` printed for each NAME.

enum Fixtures {
    struct PublicKey: Sendable {
        var name: String
        /// Contents of the .pub file.
        var pubLine: String
        /// Output of `ssh-keygen -l -E sha256 -f NAME.pub`.
        var keygenFingerprintOutput: String
    }

    static let keys: [PublicKey] = [
        PublicKey(
            name: "ked1",
            pubLine: #"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD ed1@ecto"#,
            keygenFingerprintOutput: #"256 SHA256:2A398lOvBz5OQzlA/MbOoRFL8osJgxaCrw9o5KVkxwI ed1@ecto (ED25519)"#),
        PublicKey(
            name: "ked2",
            pubLine: #"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr ed2@ecto"#,
            keygenFingerprintOutput: #"256 SHA256:ih4xQ7weOtip/MhSlbR+pd0g5fCzV8891pakl26CU/A ed2@ecto (ED25519)"#),
        PublicKey(
            name: "ked3",
            pubLine: #"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4 ed3@ecto"#,
            keygenFingerprintOutput: #"256 SHA256:2lzF2PWiaD/ZinAn0Kn/jp00/vhiu0KkIJ4lgNWiHbc ed3@ecto (ED25519)"#),
        PublicKey(
            name: "ked4",
            pubLine: #"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0QatIL2IkUSjBmLClCv83eUAu6pWpw+k3KVhBHnyp2 ed4@ecto"#,
            keygenFingerprintOutput: #"256 SHA256:Ri4asCGzmH6ym9f4ZYhIewyALOBAcDSxTjjL6ezCtGE ed4@ecto (ED25519)"#),
        PublicKey(
            name: "ked5",
            pubLine: #"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWIzCCJmy5dFTu1qXcyurDx+xLXYLNlCjOxWTPR8Huo ed5@ecto"#,
            keygenFingerprintOutput: #"256 SHA256:0kl3HbyJOsDzs1vb/xT4lHhyV2Ze+IQPvJgHZy/2bGc ed5@ecto (ED25519)"#),
        PublicKey(
            name: "kec256",
            pubLine:
                #"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q= ec256@ecto"#,
            keygenFingerprintOutput: #"256 SHA256:O+7iuYtERZ3WPoBgiF8cFadUPs2EOXzydo8BTZC0GmU ec256@ecto (ECDSA)"#),
        PublicKey(
            name: "kec384",
            pubLine:
                #"ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBCD4SVlYqMIX2S0ydevuzEeyupe3YrjicXQ7pJ2Oa/VJcwPm8lUoKv8CPNgmD7dhaz0ggfuduvAKWuNzhLwoOv7oKFo2cd4HlZo3L2kKC4ZyzOWWNEcT/+Y2Rx1Gbr/Quw== ec384@ecto"#,
            keygenFingerprintOutput: #"384 SHA256:uyU/gLJKV2sF5rqXNJ1UANTwpA4hbgpsx/zXRRUED/s ec384@ecto (ECDSA)"#),
        PublicKey(
            name: "kec521",
            pubLine:
                #"ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBADl+ky1IdjHuujE4H91TMHdBX13FGoP2Day946GdYNo7+08n8ghBphMFrA3Qpw981iNTp/sgOP0w2ad65jRIaUUjQHZYBQgB/UXZAIvPaP5EET7AK2TLJUYGRMCoVCRCusKQdiyVb3h9By5+/bdyn0vBTKjemRHBSWjpSufep+iuQkm4w== ec521@ecto"#,
            keygenFingerprintOutput: #"521 SHA256:OOpQOcfJQ0h76USCJ28glZ3x02nLWEOKF7Hw2ZZgtL8 ec521@ecto (ECDSA)"#),
        PublicKey(
            name: "krsa",
            pubLine:
                #"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXDk+lItoinm1wd9ivblCthmnuUMuL0cCxgZSQfpPyqRwo6yGLmv+JtZpKeHcYQTYmk8Hg2B/ktOaQXFC+l4Q/9z+c5lt5kk+qJ969//w8znUGSsZTWLT3sDN451oQlKg2DOt41F3euVdCylMNc9mwtYeimpqpz8X76+2pyNl1TQ== rsa@ecto"#,
            keygenFingerprintOutput: #"1024 SHA256:tL9bqReP+zsBs3PbIh5Yg2TZW+UWkZmUS6gly6D9XPA rsa@ecto (RSA)"#),
    ]

    static func key(_ name: String) -> PublicKey { keys.first { $0.name == name }! }

    static let knownHostsFull = #"""
        # ecto-tunnel test known_hosts

        example.com,192.0.2.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD ed1@ecto
        [127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr
        	  [127.0.0.1]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q=   leading whitespace, second algorithm  
        127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4
        *.wild.test,!bad.wild.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0QatIL2IkUSjBmLClCv83eUAu6pWpw+k3KVhBHnyp2 wildcard with negation
        h?.q.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWIzCCJmy5dFTu1qXcyurDx+xLXYLNlCjOxWTPR8Huo
        [*.wport.test]:* ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q=
        changed.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD
        otheralg.test ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBADl+ky1IdjHuujE4H91TMHdBX13FGoP2Day946GdYNo7+08n8ghBphMFrA3Qpw981iNTp/sgOP0w2ad65jRIaUUjQHZYBQgB/UXZAIvPaP5EET7AK2TLJUYGRMCoVCRCusKQdiyVb3h9By5+/bdyn0vBTKjemRHBSWjpSufep+iuQkm4w==
        MixedCase.Example.ORG ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXDk+lItoinm1wd9ivblCthmnuUMuL0cCxgZSQfpPyqRwo6yGLmv+JtZpKeHcYQTYmk8Hg2B/ktOaQXFC+l4Q/9z+c5lt5kk+qJ969//w8znUGSsZTWLT3sDN451oQlKg2DOt41F3euVdCylMNc9mwtYeimpqpz8X76+2pyNl1TQ==
        @revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWIzCCJmy5dFTu1qXcyurDx+xLXYLNlCjOxWTPR8Huo
        @cert-authority *.ca.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4
           # indented comment
        onlyhostfield
        broken.test ssh-ed25519
        broken.test ssh-ed25519 !!!notbase64!!!
        @bogus broken.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD
        broken.test ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD
        |1|c2FsdA==|AAAA broken.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD
        broken.test ssh-foo AAAAB3NzaC1mb28=
        [127.0.0.1]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0QatIL2IkUSjBmLClCv83eUAu6pWpw+k3KVhBHnyp2
        [localhost]:2200,localhost ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBCD4SVlYqMIX2S0ydevuzEeyupe3YrjicXQ7pJ2Oa/VJcwPm8lUoKv8CPNgmD7dhaz0ggfuduvAKWuNzhLwoOv7oKFo2cd4HlZo3L2kKC4ZyzOWWNEcT/+Y2Rx1Gbr/Quw==
        @revoked @cert-authority broken.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD
        !neg.only.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr
        x.ca.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr
        """# + "\n"

    static let knownHostsClean = #"""
        example.com,192.0.2.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD ed1@ecto
        [127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr
        [127.0.0.1]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q=
        127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4
        [localhost]:2200,localhost ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBCD4SVlYqMIX2S0ydevuzEeyupe3YrjicXQ7pJ2Oa/VJcwPm8lUoKv8CPNgmD7dhaz0ggfuduvAKWuNzhLwoOv7oKFo2cd4HlZo3L2kKC4ZyzOWWNEcT/+Y2Rx1Gbr/Quw==
        MixedCase.Example.ORG ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXDk+lItoinm1wd9ivblCthmnuUMuL0cCxgZSQfpPyqRwo6yGLmv+JtZpKeHcYQTYmk8Hg2B/ktOaQXFC+l4Q/9z+c5lt5kk+qJ969//w8znUGSsZTWLT3sDN451oQlKg2DOt41F3euVdCylMNc9mwtYeimpqpz8X76+2pyNl1TQ==
        *.wild.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0QatIL2IkUSjBmLClCv83eUAu6pWpw+k3KVhBHnyp2
        @revoked revoked.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWIzCCJmy5dFTu1qXcyurDx+xLXYLNlCjOxWTPR8Huo
        @cert-authority *.ca.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4
        """# + "\n"

    static let knownHostsHashed = #"""
        |1|FGEO/oeg03YTDCZt8b8Pxr3Rtus=|9w7WFqRdLhtwOltfcztcIOBRyMw= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD ed1@ecto
        |1|y1gzBICYtBYYyAKkJsCtkfNBnmc=|xCp05auUxPDwHdGjzmDlY+R4Rlo= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD ed1@ecto
        |1|tozlYPJiINxGGMWI7MxVQeeBqiw=|KPcNItRaYgdnzqLpU5KWbmh0Eug= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr
        |1|tCesyheUS15Bw26fC8lTTssJcLY=|ZjJvD78W3pRaORxO11kimyUCYm0= ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q=
        |1|OLN6/9kG2ivOXdTPukk6hqDdA3I=|RN4COgLntQklnOlW3Zin9kLIMfQ= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4
        |1|5WYE5l1G1aAdIOHprWizA2mF5cM=|JXbGekUcPzloQQP1SXPHpNTom9Q= ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBCD4SVlYqMIX2S0ydevuzEeyupe3YrjicXQ7pJ2Oa/VJcwPm8lUoKv8CPNgmD7dhaz0ggfuduvAKWuNzhLwoOv7oKFo2cd4HlZo3L2kKC4ZyzOWWNEcT/+Y2Rx1Gbr/Quw==
        |1|1YizoYkxTsYozjtSjRQ8VZ9dLzE=|A/vBEwcGQ1LGF6hz0sYWZy32dBI= ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBCD4SVlYqMIX2S0ydevuzEeyupe3YrjicXQ7pJ2Oa/VJcwPm8lUoKv8CPNgmD7dhaz0ggfuduvAKWuNzhLwoOv7oKFo2cd4HlZo3L2kKC4ZyzOWWNEcT/+Y2Rx1Gbr/Quw==
        |1|AObysE9BTvNtSjSIgSlkp6XqSaA=|j9R3lhCdAW5PY5acN6B+KqoH3VM= ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXDk+lItoinm1wd9ivblCthmnuUMuL0cCxgZSQfpPyqRwo6yGLmv+JtZpKeHcYQTYmk8Hg2B/ktOaQXFC+l4Q/9z+c5lt5kk+qJ969//w8znUGSsZTWLT3sDN451oQlKg2DOt41F3euVdCylMNc9mwtYeimpqpz8X76+2pyNl1TQ==
        *.wild.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0QatIL2IkUSjBmLClCv83eUAu6pWpw+k3KVhBHnyp2
        @revoked revoked.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWIzCCJmy5dFTu1qXcyurDx+xLXYLNlCjOxWTPR8Huo
        @cert-authority *.ca.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9R3mmGYcLCUh+mRfb6KOlXmbryg3cIr3XsMZ1YysL4
        """# + "\n"

    /// `ssh-keygen -F NAME -f kh_full` header lines, per NAME.
    static let findFull: KeyValuePairs<String, [String]> = [
        #"example.com"#: [#"# Host example.com found: line 3 "#, #"# Host example.com found: line 13 REVOKED"#],
        #"192.0.2.1"#: [#"# Host 192.0.2.1 found: line 3 "#, #"# Host 192.0.2.1 found: line 13 REVOKED"#],
        #"[127.0.0.1]:2222"#: [
            #"# Host [127.0.0.1]:2222 found: line 4 "#, #"# Host [127.0.0.1]:2222 found: line 5 "#,
            #"# Host [127.0.0.1]:2222 found: line 13 REVOKED"#,
        ],
        #"127.0.0.1"#: [#"# Host 127.0.0.1 found: line 6 "#, #"# Host 127.0.0.1 found: line 13 REVOKED"#],
        #"[127.0.0.1]:22"#: [
            #"# Host [127.0.0.1]:22 found: line 13 REVOKED"#, #"# Host [127.0.0.1]:22 found: line 23 "#,
        ],
        #"a.wild.test"#: [#"# Host a.wild.test found: line 7 "#, #"# Host a.wild.test found: line 13 REVOKED"#],
        #"bad.wild.test"#: [#"# Host bad.wild.test found: line 13 REVOKED"#],
        #"[a.wild.test]:2222"#: [#"# Host [a.wild.test]:2222 found: line 13 REVOKED"#],
        #"h1.q.test"#: [#"# Host h1.q.test found: line 8 "#, #"# Host h1.q.test found: line 13 REVOKED"#],
        #"h12.q.test"#: [#"# Host h12.q.test found: line 13 REVOKED"#],
        #"[x.wport.test]:2222"#: [
            #"# Host [x.wport.test]:2222 found: line 9 "#, #"# Host [x.wport.test]:2222 found: line 13 REVOKED"#,
        ],
        #"x.wport.test"#: [#"# Host x.wport.test found: line 13 REVOKED"#],
        #"changed.test"#: [#"# Host changed.test found: line 10 "#, #"# Host changed.test found: line 13 REVOKED"#],
        #"otheralg.test"#: [#"# Host otheralg.test found: line 11 "#, #"# Host otheralg.test found: line 13 REVOKED"#],
        #"mixedcase.example.org"#: [
            #"# Host mixedcase.example.org found: line 12 "#, #"# Host mixedcase.example.org found: line 13 REVOKED"#,
        ],
        #"MixedCase.Example.ORG"#: [
            #"# Host MixedCase.Example.ORG found: line 12 "#, #"# Host MixedCase.Example.ORG found: line 13 REVOKED"#,
        ],
        #"[localhost]:2200"#: [
            #"# Host [localhost]:2200 found: line 13 REVOKED"#, #"# Host [localhost]:2200 found: line 24 "#,
        ],
        #"localhost"#: [#"# Host localhost found: line 13 REVOKED"#, #"# Host localhost found: line 24 "#],
        #"[localhost]:2201"#: [#"# Host [localhost]:2201 found: line 13 REVOKED"#],
        #"broken.test"#: [
            #"# Host broken.test found: line 13 REVOKED"#, #"# Host broken.test found: line 18 "#,
            #"# Host broken.test found: line 20 "#,
        ],
        #"x.ca.test"#: [
            #"# Host x.ca.test found: line 13 REVOKED"#, #"# Host x.ca.test found: line 14 CA"#,
            #"# Host x.ca.test found: line 27 "#,
        ],
        #"y.ca.test"#: [#"# Host y.ca.test found: line 13 REVOKED"#, #"# Host y.ca.test found: line 14 CA"#],
        #"neg.only.test"#: [#"# Host neg.only.test found: line 13 REVOKED"#],
        #"other.test"#: [#"# Host other.test found: line 13 REVOKED"#],
        #"revoked.test"#: [#"# Host revoked.test found: line 13 REVOKED"#],
        #"[Upper.Port.Test]:2022"#: [#"# Host [Upper.Port.Test]:2022 found: line 13 REVOKED"#],
        #"[upper.port.test]:2022"#: [#"# Host [upper.port.test]:2022 found: line 13 REVOKED"#],
    ]

    /// `ssh-keygen -F NAME -f kh_hashed` header lines, per NAME.
    static let findHashed: KeyValuePairs<String, [String]> = [
        #"example.com"#: [#"# Host example.com found: line 1 "#],
        #"192.0.2.1"#: [#"# Host 192.0.2.1 found: line 2 "#],
        #"[127.0.0.1]:2222"#: [#"# Host [127.0.0.1]:2222 found: line 3 "#, #"# Host [127.0.0.1]:2222 found: line 4 "#],
        #"127.0.0.1"#: [#"# Host 127.0.0.1 found: line 5 "#],
        #"[127.0.0.1]:22"#: [],
        #"a.wild.test"#: [#"# Host a.wild.test found: line 9 "#],
        #"bad.wild.test"#: [#"# Host bad.wild.test found: line 9 "#],
        #"[a.wild.test]:2222"#: [],
        #"h1.q.test"#: [],
        #"h12.q.test"#: [],
        #"[x.wport.test]:2222"#: [],
        #"x.wport.test"#: [],
        #"changed.test"#: [],
        #"otheralg.test"#: [],
        #"mixedcase.example.org"#: [#"# Host mixedcase.example.org found: line 8 "#],
        #"MixedCase.Example.ORG"#: [],
        #"[localhost]:2200"#: [#"# Host [localhost]:2200 found: line 6 "#],
        #"localhost"#: [#"# Host localhost found: line 7 "#],
        #"[localhost]:2201"#: [],
        #"broken.test"#: [],
        #"x.ca.test"#: [#"# Host x.ca.test found: line 11 CA"#],
        #"y.ca.test"#: [#"# Host y.ca.test found: line 11 CA"#],
        #"neg.only.test"#: [],
        #"other.test"#: [],
        #"revoked.test"#: [#"# Host revoked.test found: line 10 REVOKED"#],
        #"[Upper.Port.Test]:2022"#: [],
        #"[upper.port.test]:2022"#: [],
    ]

}
