// Types for authz-dev.mjs (plain JavaScript so the demo scripts run under bare node).

export declare const REPO: string;
export declare const AUTHZ_BIN: string;

export interface DevClaims {
  sub: string;
  permissions?: string[];
  roles?: string[];
  /** The `org_id` claim (Auth0 Organizations). */
  org_id?: string;
  /** Seconds until `exp`; negative for an expired token. */
  expiresIn?: number;
}

export interface DevAuthz {
  baseUrl: string;
  grpcAddress: string;
  devDir: string;
  mint(claims: DevClaims): Promise<string>;
  stop(): Promise<void>;
}

export declare function freePort(): Promise<number>;
export declare function mintToken(devDir: string, claims: DevClaims): Promise<string>;
export declare function startDevAuthz(options?: {
  httpPort?: number;
  grpcPort?: number;
  issuerPort?: number;
  corsOrigins?: string[];
  devDir?: string;
  quiet?: boolean;
}): Promise<DevAuthz>;
