#ifndef ECTO_CLIBCRYPTO_SHIM_H
#define ECTO_CLIBCRYPTO_SHIM_H
/*
 * OpenSSL 3's libcrypto, for what ecto-tunnel does with user keys that libssh2 1.10 cannot:
 * reading PEM private keys (PKCS#1, PKCS#8, encrypted or not), building an RSA key from the
 * components of an OpenSSH-format key, RSA PKCS#1 v1.5 signatures with SHA-512/256/1, AES-256-CTR
 * for encrypted OpenSSH keys, SHA-512 for bcrypt_pbkdf. Used only by EctoSSH.
 * Each wrapper returns 1 on success and 0 on failure, and frees what it allocated.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <stdlib.h>

/* Reads a PEM private key from memory; passphrase may be NULL. *reason: 1 bad passphrase or
 * missing one for an encrypted key, 2 not a key OpenSSL can read. */
static inline EVP_PKEY *ecto_pem_read_private_key(const unsigned char *pem, size_t len, const char *passphrase,
                                                  int *reason) {
    *reason = 0;
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) { *reason = 2; return NULL; }
    /* "" instead of NULL: OpenSSL must never prompt on a terminal. */
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)(passphrase ? passphrase : ""));
    BIO_free(bio);
    if (!key) {
        unsigned long error = ERR_peek_last_error();
        int r = ERR_GET_REASON(error);
        int lib = ERR_GET_LIB(error);
        *reason = 2;
        if ((lib == ERR_LIB_PEM && (r == PEM_R_BAD_DECRYPT || r == PEM_R_BAD_PASSWORD_READ))
            || (lib == ERR_LIB_EVP && r == EVP_R_BAD_DECRYPT) || (lib == ERR_LIB_PROV && r == 100 /* PROV_R_BAD_DECRYPT */)) {
            *reason = 1;
        }
        ERR_clear_error();
    }
    return key;
}

/* An RSA private key from big-endian components (OpenSSH order: n, e, d, iqmp, p, q). */
static inline EVP_PKEY *ecto_rsa_from_components(const unsigned char *n, size_t n_len, const unsigned char *e,
                                                 size_t e_len, const unsigned char *d, size_t d_len,
                                                 const unsigned char *p, size_t p_len, const unsigned char *q,
                                                 size_t q_len, const unsigned char *iqmp, size_t iqmp_len) {
    EVP_PKEY *key = NULL;
    BN_CTX *ctx = BN_CTX_secure_new();
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    BIGNUM *bn_d = BN_secure_new(), *bn_p = BN_secure_new(), *bn_q = BN_secure_new(), *bn_iqmp = BN_secure_new();
    BIGNUM *dmp1 = BN_secure_new(), *dmq1 = BN_secure_new(), *t = BN_secure_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    if (!ctx || !bn_n || !bn_e || !bn_d || !bn_p || !bn_q || !bn_iqmp || !dmp1 || !dmq1 || !t || !bld) goto done;
    if (!BN_bin2bn(d, (int)d_len, bn_d) || !BN_bin2bn(p, (int)p_len, bn_p) || !BN_bin2bn(q, (int)q_len, bn_q)
        || !BN_bin2bn(iqmp, (int)iqmp_len, bn_iqmp))
        goto done;
    /* dmp1 = d mod (p-1), dmq1 = d mod (q-1): OpenSSH does not store them. */
    if (!BN_sub(t, bn_p, BN_value_one()) || !BN_mod(dmp1, bn_d, t, ctx)) goto done;
    if (!BN_sub(t, bn_q, BN_value_one()) || !BN_mod(dmq1, bn_d, t, ctx)) goto done;
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, bn_d)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, bn_p)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, bn_q)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, bn_iqmp))
        goto done;
    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!params || !pctx || EVP_PKEY_fromdata_init(pctx) <= 0
        || EVP_PKEY_fromdata(pctx, &key, EVP_PKEY_KEYPAIR, params) <= 0)
        key = NULL;
done:
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n); BN_free(bn_e);
    BN_clear_free(bn_d); BN_clear_free(bn_p); BN_clear_free(bn_q); BN_clear_free(bn_iqmp);
    BN_clear_free(dmp1); BN_clear_free(dmq1); BN_clear_free(t);
    BN_CTX_free(ctx);
    ERR_clear_error();
    return key;
}

/* 1 when the key is RSA. */
static inline int ecto_pkey_is_rsa(const EVP_PKEY *key) { return EVP_PKEY_is_a(key, "RSA"); }

/* Key type name as OpenSSL calls it ("RSA", "ED25519", "EC", "DSA"...). */
static inline const char *ecto_pkey_type_name(const EVP_PKEY *key) { return EVP_PKEY_get0_type_name(key); }

static inline int ecto_pkey_bits(const EVP_PKEY *key) { return EVP_PKEY_get_bits(key); }

/* Big-endian n and e of an RSA key, each into a buffer of at least 1024 bytes. */
static inline int ecto_rsa_public(const EVP_PKEY *key, unsigned char *n, size_t *n_len, unsigned char *e, size_t *e_len) {
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    int ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &bn_n) && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &bn_e)
             && BN_num_bytes(bn_n) <= 1024 && BN_num_bytes(bn_e) <= 1024;
    if (ok) {
        *n_len = (size_t)BN_bn2bin(bn_n, n);
        *e_len = (size_t)BN_bn2bin(bn_e, e);
    }
    BN_free(bn_n);
    BN_free(bn_e);
    ERR_clear_error();
    return ok;
}

/* RSASSA-PKCS1-v1_5 over data with hash 512, 256 or 1. Returns a malloc'ed signature (freed by
 * whoever owns it: libssh2 frees it with free()), or NULL. */
static inline unsigned char *ecto_rsa_sign(EVP_PKEY *key, int hash, const unsigned char *data, size_t len, size_t *sig_len) {
    const EVP_MD *md = hash == 512 ? EVP_sha512() : hash == 256 ? EVP_sha256() : EVP_sha1();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t size = 0;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, md, NULL, key) <= 0 || EVP_DigestSign(ctx, NULL, &size, data, len) <= 0)
        goto done;
    sig = malloc(size);
    if (!sig) goto done;
    if (EVP_DigestSign(ctx, sig, &size, data, len) <= 0) {
        free(sig);
        sig = NULL;
        goto done;
    }
    *sig_len = size;
done:
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return sig;
}

/* RSASSA-PKCS1-v1_5 verification (tests). */
static inline int ecto_rsa_verify(EVP_PKEY *key, int hash, const unsigned char *data, size_t len,
                                  const unsigned char *sig, size_t sig_len) {
    const EVP_MD *md = hash == 512 ? EVP_sha512() : hash == 256 ? EVP_sha256() : EVP_sha1();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) > 0 && EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* AES-256-CTR decryption in place (OpenSSH keys: 32-byte key, 16-byte IV). */
static inline int ecto_aes256_ctr(const unsigned char *key, const unsigned char *iv, unsigned char *buf, size_t len) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int out = 0, fin = 0;
    int ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv) == 1
             && EVP_DecryptUpdate(ctx, buf, &out, buf, (int)len) == 1 && EVP_DecryptFinal_ex(ctx, buf + out, &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static inline void ecto_sha512(const unsigned char *data, size_t len, unsigned char *out) { SHA512(data, len, out); }

/* Zeroes memory in a way the compiler does not remove. */
static inline void ecto_cleanse(void *p, size_t len) { OPENSSL_cleanse(p, len); }

#endif
