DROP TABLE superusers;
