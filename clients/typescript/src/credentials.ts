// TLS and the bearer token. The servers require both (README, "Security"); plaintext is only for
// a server started with LEDGER_INSECURE=1 on loopback.
import { credentials, Metadata, type CallCredentials, type ChannelCredentials } from "@grpc/grpc-js";

/** A token, or a function that returns the current one (called for every call). */
export type TokenSource = string | (() => string | Promise<string>);

export interface Security {
  /** PEM of the CA that signed the servers' certificate; omitted: the system's roots. */
  caCert?: string | Buffer;
  /** Sent on every call as `authorization: Bearer <token>`. */
  token?: TokenSource;
  /** Plaintext, for a loopback server started with LEDGER_INSECURE=1. Tokens then go as metadata. */
  insecure?: boolean;
}

export async function currentToken(token: TokenSource): Promise<string> {
  return typeof token === "string" ? token : await token();
}

function bearer(token: TokenSource): CallCredentials {
  return credentials.createFromMetadataGenerator((_params, callback) => {
    currentToken(token).then(
      (value) => {
        const metadata = new Metadata();
        metadata.set("authorization", `Bearer ${value}`);
        callback(null, metadata);
      },
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
    );
  });
}

/**
 * The channel credentials for `security`, and the token the client must add to each call's
 * metadata itself: grpc-js refuses to attach call credentials to a plaintext channel.
 */
export function channelCredentials(security: Security): {
  channel: ChannelCredentials;
  tokenInMetadata: TokenSource | undefined;
} {
  if (security.insecure) {
    return { channel: credentials.createInsecure(), tokenInMetadata: security.token };
  }
  const ca = typeof security.caCert === "string" ? Buffer.from(security.caCert) : security.caCert;
  const tls = credentials.createSsl(ca ?? null);
  if (security.token === undefined) {
    return { channel: tls, tokenInMetadata: undefined };
  }
  return {
    channel: credentials.combineChannelCredentials(tls, bearer(security.token)),
    tokenInMetadata: undefined,
  };
}
