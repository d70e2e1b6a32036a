"""The legacy schemas exactly as the seeds' DDL gives them (seed 001: App Hosting Platform;
seed 002: dialup-deploy, without its ALTERs of a `processes` table the seed does not define)."""

APP_HOSTING_PLATFORM = """
CREATE TABLE System_Users (
    ID          INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    Email       TEXT NOT NULL UNIQUE,
    Password    TEXT NOT NULL,          -- bcrypt hash
    Admin       INTEGER DEFAULT 0,       -- 0=user, 1=admin
    Enabled     INTEGER NOT NULL DEFAULT 0,
    LastLogin   TEXT NOT NULL DEFAULT ''
);
CREATE TABLE System_RegistrationCodes (
    ID          INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    UserID      INTEGER NOT NULL UNIQUE,  -- Admin who created it
    Code        TEXT NOT NULL UNIQUE,      -- 8-char alphanumeric
    ValidUntil  INTEGER NOT NULL           -- Unix timestamp
);
CREATE TABLE Hosting_VirtualServers (
    ID          INTEGER NOT NULL UNIQUE PRIMARY KEY,  -- Not AUTOINCREMENT, matches container ID
    OwnerID     INTEGER NOT NULL,
    Name        TEXT NOT NULL DEFAULT '',
    Enabled     INTEGER NOT NULL DEFAULT 1,
    Deleted     INTEGER NOT NULL DEFAULT 0,           -- Soft delete flag
    CreatedAt   TEXT NOT NULL,
    UpdatedAt   TEXT NOT NULL
);

-- Special entry for host-level containers
INSERT INTO Hosting_VirtualServers VALUES (0, 0, 'HOST', 1, 0, '', '');
CREATE TABLE Hosting_DockerContainers (
    DockerID        TEXT NOT NULL,
    ParentServerID  INTEGER NOT NULL,       -- 0 = host, N = virtual server
    Command         TEXT NOT NULL,
    CreatedAt       TEXT NOT NULL,
    Image           TEXT NOT NULL,
    Labels          TEXT NOT NULL,          -- Comma-separated
    Mounts          TEXT NOT NULL,
    Names           TEXT NOT NULL,
    Networks        TEXT NOT NULL,
    Ports           TEXT NOT NULL,
    RunningFor      TEXT NOT NULL,
    Size            TEXT NOT NULL,
    State           TEXT NOT NULL,          -- running, exited, etc.
    Status          TEXT NOT NULL,
    UpdatedAt       TEXT NOT NULL,
    UNIQUE(DockerID, ParentServerID)
);
CREATE TABLE Hosting_DomainNames (
    ID              INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    VirtualServerID INTEGER NOT NULL,
    DomainName      TEXT NOT NULL UNIQUE,
    IsCloudflare    INTEGER NOT NULL DEFAULT 0,
    SSL             INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE System_RecentActivity (
    ID      INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    UserID  INTEGER NOT NULL,
    Message TEXT NOT NULL,
    Time    TEXT NOT NULL
);
"""


DIALUP_DEPLOY = """
-- Users table for multi-tenant support
CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  username TEXT UNIQUE NOT NULL,
  email TEXT UNIQUE NOT NULL,
  password_hash TEXT NOT NULL,
  display_name TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  is_active BOOLEAN DEFAULT TRUE,
  is_admin BOOLEAN DEFAULT FALSE
);

-- Organizations for team-based hosting
CREATE TABLE organizations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE NOT NULL,
  slug TEXT UNIQUE NOT NULL,
  description TEXT,
  owner_id INTEGER NOT NULL,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  is_active BOOLEAN DEFAULT TRUE,
  FOREIGN KEY (owner_id) REFERENCES users(id)
);

-- User-Organization membership
CREATE TABLE organization_members (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id INTEGER NOT NULL,
  organization_id INTEGER NOT NULL,
  role TEXT NOT NULL DEFAULT 'member', -- 'owner', 'admin', 'member'
  joined_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  UNIQUE(user_id, organization_id),
  FOREIGN KEY (user_id) REFERENCES users(id),
  FOREIGN KEY (organization_id) REFERENCES organizations(id)
);
-- Enhanced sites table with resource configuration
CREATE TABLE sites (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE NOT NULL,
  slug TEXT UNIQUE NOT NULL,
  description TEXT,
  owner_id INTEGER,
  organization_id INTEGER,
  site_type TEXT NOT NULL, -- 'static', 'dynamic', 'docker', etc.
  repository_url TEXT,
  branch TEXT DEFAULT 'main',
  build_command TEXT,
  start_command TEXT,
  port INTEGER,
  domain TEXT,
  subdomain TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  is_active BOOLEAN DEFAULT TRUE,
  FOREIGN KEY (owner_id) REFERENCES users(id),
  FOREIGN KEY (organization_id) REFERENCES organizations(id),
  CHECK ((owner_id IS NOT NULL AND organization_id IS NULL) OR 
         (owner_id IS NULL AND organization_id IS NOT NULL))
);

-- Resource limits per site
CREATE TABLE site_resource_limits (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id INTEGER NOT NULL,
  max_memory_mb INTEGER DEFAULT 512,
  max_cpu_percent INTEGER DEFAULT 50,
  max_disk_mb INTEGER DEFAULT 1024,
  max_bandwidth_mb INTEGER DEFAULT 1024,
  max_requests_per_minute INTEGER DEFAULT 1000,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (site_id) REFERENCES sites(id) ON DELETE CASCADE
);

-- Current resource usage tracking
CREATE TABLE site_resource_usage (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id INTEGER NOT NULL,
  timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
  memory_mb REAL,
  cpu_percent REAL,
  disk_mb REAL,
  bandwidth_mb REAL,
  active_requests INTEGER,
  response_time_ms REAL,
  FOREIGN KEY (site_id) REFERENCES sites(id) ON DELETE CASCADE
);

-- Historical usage aggregation for reporting
CREATE TABLE site_usage_daily (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id INTEGER NOT NULL,
  date DATE NOT NULL,
  avg_memory_mb REAL,
  max_memory_mb REAL,
  avg_cpu_percent REAL,
  max_cpu_percent REAL,
  total_bandwidth_mb REAL,
  total_requests INTEGER,
  avg_response_time_ms REAL,
  uptime_seconds INTEGER,
  UNIQUE(site_id, date),
  FOREIGN KEY (site_id) REFERENCES sites(id) ON DELETE CASCADE
);
-- Enhanced deployment tracking
CREATE TABLE deployments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id INTEGER NOT NULL,
  commit_hash TEXT,
  commit_message TEXT,
  branch TEXT,
  deployed_by INTEGER,
  status TEXT NOT NULL, -- 'pending', 'building', 'success', 'failed'
  build_log TEXT,
  build_time_seconds INTEGER,
  deployed_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (site_id) REFERENCES sites(id) ON DELETE CASCADE,
  FOREIGN KEY (deployed_by) REFERENCES users(id)
);

-- System-wide configuration
CREATE TABLE system_config (
  key TEXT PRIMARY KEY,
  value TEXT,
  description TEXT,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);

-- Site environment variables
CREATE TABLE site_environment_variables (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  is_secret BOOLEAN DEFAULT FALSE,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  UNIQUE(site_id, key),
  FOREIGN KEY (site_id) REFERENCES sites(id) ON DELETE CASCADE
);

-- Site custom domains
CREATE TABLE site_domains (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id INTEGER NOT NULL,
  domain TEXT NOT NULL,
  is_primary BOOLEAN DEFAULT FALSE,
  ssl_enabled BOOLEAN DEFAULT TRUE,
  ssl_cert_path TEXT,
  verified_at DATETIME,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (site_id) REFERENCES sites(id) ON DELETE CASCADE
);
"""
